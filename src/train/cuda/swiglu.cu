// SwiGLU gate, forward and backward, elementwise over 4-vectors in fp32 arithmetic:
// a = silu(h) * g with silu(h) = h * sigmoid(h), from hg = [h | g] per row.
#include "train/cuda/ops.hpp"
#include "train/cuda/vec.cuh"

namespace lighthouse::train::cuda {

namespace {

// 1 / (1 + e^-x): exact limits 0 and 1 for large |x| (expf overflows to inf, 1/inf = 0).
__device__ __forceinline__ float sigmoid(float x) {
  return 1.0f / (1.0f + expf(-x));
}

template <typename T>
__global__ void swiglu_forward_kernel(const T* hg, T* a, std::int64_t rows, std::int64_t hidden) {
  const std::int64_t vecs = hidden / 4, n = rows * vecs;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / vecs, c = i % vecs * 4;
    const float4 h = load4(hg + r * 2 * hidden + c);
    const float4 g = load4(hg + r * 2 * hidden + hidden + c);
    store4(a + r * hidden + c, make_float4(h.x * sigmoid(h.x) * g.x, h.y * sigmoid(h.y) * g.y,
                                           h.z * sigmoid(h.z) * g.z, h.w * sigmoid(h.w) * g.w));
  }
}

// (dh, dg) of one element: dg = da * silu(h), dh = da * g * s * (1 + h * (1 - s)).
__device__ __forceinline__ float2 swiglu_grad(float h, float g, float da) {
  const float s = sigmoid(h);
  return make_float2(da * g * s * (1.0f + h * (1.0f - s)), da * (h * s));
}

template <typename T>
__global__ void swiglu_backward_kernel(const T* hg, const T* da, T* dhg, std::int64_t rows,
                                       std::int64_t hidden) {
  const std::int64_t vecs = hidden / 4, n = rows * vecs;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / vecs, c = i % vecs * 4;
    const float4 h = load4(hg + r * 2 * hidden + c);
    const float4 g = load4(hg + r * 2 * hidden + hidden + c);
    const float4 d = load4(da + r * hidden + c);
    const float2 x = swiglu_grad(h.x, g.x, d.x), y = swiglu_grad(h.y, g.y, d.y);
    const float2 z = swiglu_grad(h.z, g.z, d.z), w = swiglu_grad(h.w, g.w, d.w);
    store4(dhg + r * 2 * hidden + c, make_float4(x.x, y.x, z.x, w.x));
    store4(dhg + r * 2 * hidden + hidden + c, make_float4(x.y, y.y, z.y, w.y));
  }
}

void check_hidden(std::int64_t hidden) {
  if (hidden % 4 != 0 || hidden < 4) {
    throw InvalidArgument("hidden", std::to_string(hidden),
                          "must be a positive multiple of 4 for the CUDA SwiGLU");
  }
}

}  // namespace

void swiglu_forward(const void* hg, void* a, DType act, std::int64_t rows, std::int64_t hidden,
                    cudaStream_t stream) {
  check_hidden(hidden);
  dispatch_act(act, [&]<typename T>() {
    swiglu_forward_kernel<T><<<grid_for(rows * hidden / 4, 256), 256, 0, stream>>>(
        static_cast<const T*>(hg), static_cast<T*>(a), rows, hidden);
  });
  CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
}

void swiglu_backward(const void* hg, const void* da, void* dhg, DType act, std::int64_t rows,
                     std::int64_t hidden, cudaStream_t stream) {
  check_hidden(hidden);
  dispatch_act(act, [&]<typename T>() {
    swiglu_backward_kernel<T><<<grid_for(rows * hidden / 4, 256), 256, 0, stream>>>(
        static_cast<const T*>(hg), static_cast<const T*>(da), static_cast<T*>(dhg), rows, hidden);
  });
  CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

}  // namespace lighthouse::train::cuda
