// AdamW over the model's parameter arenas (ops.hpp), and the squared gradient norm that the
// global-norm clipping needs. One block per kAdamWChunk elements; every chunk belongs to one
// parameter, whose decay flag it reads. The update repeats train/optimizer.cpp operation by
// operation in double with explicitly rounded intrinsics (no fused multiply-adds, which the CPU
// build does not use either), so fp32 runs match the CPU optimizer bit for bit on equal inputs.
#include <cuda_bf16.h>

#include "train/cuda/ops.hpp"
#include "train/cuda/vec.cuh"

namespace lighthouse::train::cuda {

namespace {

constexpr int kThreads = 256;

std::int64_t chunks_of(std::int64_t n) {
  return (n + kAdamWChunk - 1) / kAdamWChunk;
}

__global__ void sum_squares_kernel(const float* grad, std::int64_t n, double* partials) {
  __shared__ double scratch[32];
  const std::int64_t first = blockIdx.x * kAdamWChunk;
  const std::int64_t last = min(n, first + kAdamWChunk);
  double s = 0;
  for (std::int64_t i = first + threadIdx.x; i < last; i += blockDim.x) {
    const double g = grad[i];
    s = __dadd_rn(s, __dmul_rn(g, g));
  }
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// One block: thread t adds partials t, t + blockDim, ... in order, then the block sum.
__global__ void sum_partials_kernel(const double* partials, std::int64_t count, double* out) {
  __shared__ double scratch[32];
  double s = 0;
  for (std::int64_t i = threadIdx.x; i < count; i += blockDim.x) s = __dadd_rn(s, partials[i]);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) *out = s;
}

__global__ void adamw_kernel(float* value, const float* grad, float* m, float* v,
                             __nv_bfloat16* copy, const std::uint8_t* decay_flags, std::int64_t n,
                             AdamWStep step) {
  const std::int64_t first = blockIdx.x * kAdamWChunk;
  const std::int64_t last = min(n, first + kAdamWChunk);
  const double decay = decay_flags[blockIdx.x] ? __dmul_rn(step.lr, step.weight_decay) : 0.0;
  const double b1 = step.beta1, b2 = step.beta2;
  const double one_b1 = __dadd_rn(1.0, -b1), one_b2 = __dadd_rn(1.0, -b2);
  for (std::int64_t i = first + threadIdx.x; i < last; i += blockDim.x) {
    const double g = __fmul_rn(grad[i], step.grad_scale);
    const double mj = __dadd_rn(__dmul_rn(b1, m[i]), __dmul_rn(one_b1, g));
    const double vj = __dadd_rn(__dmul_rn(b2, v[i]), __dmul_rn(__dmul_rn(one_b2, g), g));
    m[i] = static_cast<float>(mj);
    v[i] = static_cast<float>(vj);
    const double update =
        __ddiv_rn(__ddiv_rn(mj, step.c1), __dadd_rn(__dsqrt_rn(__ddiv_rn(vj, step.c2)), step.eps));
    const double p = value[i];
    const float out = static_cast<float>(
        __dsub_rn(__dsub_rn(p, __dmul_rn(decay, p)), __dmul_rn(step.lr, update)));
    value[i] = out;
    if (copy != nullptr) copy[i] = __float2bfloat16_rn(out);
  }
}

}  // namespace

std::size_t grad_sum_squares_scratch(std::int64_t n) {
  return static_cast<std::size_t>(chunks_of(n));
}

void grad_sum_squares(const float* grad, std::int64_t n, double* scratch, double* out,
                      cudaStream_t stream) {
  const std::int64_t chunks = chunks_of(n);
  sum_squares_kernel<<<static_cast<unsigned>(chunks), kThreads, 0, stream>>>(grad, n, scratch);
  CUDA_CHECK_LAUNCH("sum_squares_kernel");
  sum_partials_kernel<<<1, 1024, 0, stream>>>(scratch, chunks, out);
  CUDA_CHECK_LAUNCH("sum_partials_kernel");
}

void adamw_update(float* value, const float* grad, float* m, float* v, void* copy,
                  const std::uint8_t* decay, std::int64_t n, const AdamWStep& step,
                  cudaStream_t stream) {
  adamw_kernel<<<static_cast<unsigned>(chunks_of(n)), kThreads, 0, stream>>>(
      value, grad, m, v, static_cast<__nv_bfloat16*>(copy), decay, n, step);
  CUDA_CHECK_LAUNCH("adamw_kernel");
}

}  // namespace lighthouse::train::cuda
