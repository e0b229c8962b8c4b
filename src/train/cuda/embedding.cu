// Token embedding: the forward gathers table rows into the fp32 residual stream; the backward
// (a sum of dx over the rows of each token) is the product one_hot^T * dx that the model runs on
// cuBLASLt, for which this file writes the one-hot matrix.
#include "train/cuda/ops.hpp"
#include "train/cuda/vec.cuh"

namespace lighthouse::train::cuda {

namespace {

__global__ void embedding_forward_kernel(const std::int32_t* tokens, const float4* table, float4* x,
                                         std::int64_t rows, std::int64_t vecs) {
  const std::int64_t n = rows * vecs;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / vecs, c = i % vecs;
    x[i] = table[static_cast<std::int64_t>(tokens[r]) * vecs + c];
  }
}

template <typename T>
__global__ void one_hot_kernel(const std::int32_t* tokens, T* out, std::int64_t rows,
                               std::int64_t width) {
  const std::int64_t n = rows * width;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    out[i] = from_float<T>(tokens[i / width] == i % width ? 1.0f : 0.0f);
  }
}

}  // namespace

void embedding_forward(const std::int32_t* tokens, const float* table, float* x, std::int64_t rows,
                       std::int64_t dim, cudaStream_t stream) {
  const std::int64_t vecs = dim / 4;
  embedding_forward_kernel<<<grid_for(rows * vecs, 256), 256, 0, stream>>>(
      tokens, reinterpret_cast<const float4*>(table), reinterpret_cast<float4*>(x), rows, vecs);
  CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

void one_hot(const std::int32_t* tokens, void* out, DType dtype, std::int64_t rows,
             std::int64_t width, cudaStream_t stream) {
  dispatch_act(dtype, [&]<typename T>() {
    one_hot_kernel<T><<<grid_for(rows * width, 256), 256, 0, stream>>>(tokens, static_cast<T*>(out),
                                                                       rows, width);
  });
  CUDA_CHECK_LAUNCH("one_hot_kernel");
}

}  // namespace lighthouse::train::cuda
