// Softmax cross-entropy of the LM head's logits, a chunk of rows at a time (the model computes
// the chunk's logits, then calls these): the logits never exist for all rows at once. The
// forward keeps each row's log-sum-exp; the backward recomputes the chunk's logits (one small
// product) and turns them into dlogits with it, so nothing of vocabulary size is kept between
// the passes. One warp per row; the vocabulary (257 bytes) is a few elements per lane.
#include <cfloat>

#include "train/cuda/ops.hpp"
#include "train/cuda/vec.cuh"

namespace lighthouse::train::cuda {

namespace {

constexpr int kWarpsPerBlock = 8;

__global__ void cross_entropy_forward_kernel(const float* logits, std::int64_t ld,
                                             const std::int32_t* targets, std::int64_t rows,
                                             int vocab, float* loss, float* lse) {
  const std::int64_t row =
      blockIdx.x * static_cast<std::int64_t>(kWarpsPerBlock) + threadIdx.x / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (row >= rows) return;  // a whole warp leaves together
  const float* z = logits + row * ld;
  float mx = -FLT_MAX;
  for (int v = lane; v < vocab; v += 32) mx = fmaxf(mx, z[v]);
  for (int o = 16; o > 0; o /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float sum = 0;
  for (int v = lane; v < vocab; v += 32) sum += expf(z[v] - mx);
  for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane == 0) {
    const float l = mx + logf(sum);
    const std::int32_t t = targets[row];
    lse[row] = l;
    loss[row] = t >= 0 ? l - z[t] : 0.0f;
  }
}

template <typename T>
__global__ void cross_entropy_backward_kernel(const float* logits, std::int64_t ld,
                                              const float* lse, const std::int32_t* targets,
                                              std::int64_t rows, int vocab, float grad_scale,
                                              T* dlogits) {
  const std::int64_t n = rows * ld;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t row = i / ld;
    const int v = static_cast<int>(i % ld);
    const std::int32_t t = targets[row];
    float d = 0;
    if (t >= 0 && v < vocab) {
      const float p = expf(logits[i] - lse[row]);
      d = grad_scale * (v == t ? p - 1.0f : p);
    }
    dlogits[i] = from_float<T>(d);
  }
}

}  // namespace

void cross_entropy_forward(const float* logits, std::int64_t ld, const std::int32_t* targets,
                           std::int64_t rows, std::int64_t vocab, float* loss, float* lse,
                           cudaStream_t stream) {
  if (rows == 0) return;
  const auto blocks = static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  cross_entropy_forward_kernel<<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(
      logits, ld, targets, rows, static_cast<int>(vocab), loss, lse);
  CUDA_CHECK_LAUNCH("cross_entropy_forward_kernel");
}

void cross_entropy_backward(const float* logits, std::int64_t ld, const float* lse,
                            const std::int32_t* targets, std::int64_t rows, std::int64_t vocab,
                            float grad_scale, void* dlogits, DType dtype, cudaStream_t stream) {
  if (rows == 0) return;
  dispatch_act(dtype, [&]<typename T>() {
    cross_entropy_backward_kernel<T><<<grid_for(rows * ld, 256), 256, 0, stream>>>(
        logits, ld, lse, targets, rows, static_cast<int>(vocab), grad_scale,
        static_cast<T*>(dlogits));
  });
  CUDA_CHECK_LAUNCH("cross_entropy_backward_kernel");
}

}  // namespace lighthouse::train::cuda
