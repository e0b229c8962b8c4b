// Small copies of the CUDA model: the bf16 weight copies after weights are loaded, and row
// gathers (the logits of a few rows for the probes).
#include <cuda_bf16.h>

#include "train/cuda/ops.hpp"
#include "train/cuda/vec.cuh"

namespace lighthouse::train::cuda {

namespace {

__global__ void cast_to_bf16_kernel(const float* src, __nv_bfloat16* dst, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = __float2bfloat16_rn(src[i]);
  }
}

template <typename T>
__global__ void gather_rows_kernel(const T* src, std::int64_t ld, const std::int64_t* rows,
                                   std::int64_t count, std::int64_t width, T* dst) {
  const std::int64_t n = count * width;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = src[rows[i / width] * ld + i % width];
  }
}

}  // namespace

void cast_to_bf16(const float* src, void* dst, std::int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  cast_to_bf16_kernel<<<grid_for(n, 256), 256, 0, stream>>>(src, static_cast<__nv_bfloat16*>(dst),
                                                            n);
  CUDA_CHECK_LAUNCH("cast_to_bf16_kernel");
}

void gather_rows(const void* src, std::int64_t ld, const std::int64_t* rows, std::int64_t count,
                 std::int64_t width, void* dst, DType dtype, cudaStream_t stream) {
  if (count == 0) return;
  dispatch_act(dtype, [&]<typename T>() {
    gather_rows_kernel<T><<<grid_for(count * width, 256), 256, 0, stream>>>(
        static_cast<const T*>(src), ld, rows, count, width, static_cast<T*>(dst));
  });
  CUDA_CHECK_LAUNCH("gather_rows_kernel");
}

}  // namespace lighthouse::train::cuda
