// Dense causal attention over a sequence of one token, for bfloat16 and float16. cuDNN's SDPA
// refuses s_q = s_kv = 1 ("graph.validate: s_q = s_kv = 1 is not supported"), and a packed
// document or a user's sequence can be one token long. With one key the softmax weight is
// exactly 1, so:
//   forward   o = v (of the query head's KV head), stats = scale * q.k (the log-sum-exp)
//   backward  dv = sum of dout over the KV head's query heads, dq = dk = 0 (dS = P (dP - dP) = 0)
// Each output element is written by one thread in a fixed order: deterministic.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/check.hpp"
#include "cuda/single_key_attention.hpp"
#include "cuda/vec.cuh"

namespace lighthouse::cuda {

namespace {

// (b, h, d) element strides of one [b, h, 1, d] operand (the s stride is irrelevant).
struct Strides3 {
  long long b, h, d;
};

Strides3 strides_of(const std::array<std::int64_t, 4>& s) {
  return {s[0], s[1], s[3]};
}

__device__ __forceinline__ float to_float(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
__device__ __forceinline__ float to_float(__half x) {
  return __half2float(x);
}
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half(x);
}

// Grid (h, b), one warp: o = v, and the warp's fixed-order sum of q.k for the statistics.
template <typename T>
__global__ void single_key_forward_kernel(const T* q, const T* k, const T* v, T* o, float* stats,
                                          Strides3 qs, Strides3 ks, Strides3 vs, Strides3 os,
                                          int heads, int group, int d, float scale) {
  const long long b = blockIdx.y;
  const int h = static_cast<int>(blockIdx.x), hk = h / group;
  float dot = 0.f;
  for (int e = static_cast<int>(threadIdx.x); e < d; e += 32) {
    dot +=
        to_float(q[b * qs.b + h * qs.h + e * qs.d]) * to_float(k[b * ks.b + hk * ks.h + e * ks.d]);
    o[b * os.b + h * os.h + e * os.d] = v[b * vs.b + hk * vs.h + e * vs.d];
  }
  for (int offset = 16; offset > 0; offset /= 2) dot += __shfl_down_sync(0xffffffffu, dot, offset);
  if (threadIdx.x == 0) stats[b * heads + h] = scale * dot;
}

// Grid (h_kv, b), one warp: dv sums the group's dout in head order; dq and dk are zero.
template <typename T>
__global__ void single_key_backward_kernel(const T* dout, T* dq, T* dk, T* dv, Strides3 dos,
                                           Strides3 dqs, Strides3 dks, Strides3 dvs, int group,
                                           int d) {
  const long long b = blockIdx.y;
  const int hk = static_cast<int>(blockIdx.x);
  for (int e = static_cast<int>(threadIdx.x); e < d; e += 32) {
    float sum = 0.f;
    for (int j = 0; j < group; ++j) {
      const int h = hk * group + j;
      sum += to_float(dout[b * dos.b + h * dos.h + e * dos.d]);
      dq[b * dqs.b + h * dqs.h + e * dqs.d] = from_float<T>(0.f);
    }
    dk[b * dks.b + hk * dks.h + e * dks.d] = from_float<T>(0.f);
    dv[b * dvs.b + hk * dvs.h + e * dvs.d] = from_float<T>(sum);
  }
}

template <class F>
void dispatch_16bit(DType dtype, F&& f) {
  if (dtype == DType::kBFloat16) {
    f(__nv_bfloat16{});
  } else {
    f(__half{});
  }
}

}  // namespace

void single_key_forward(const SdpaDesc& desc, const void* q, const void* k, const void* v, void* o,
                        float* stats, cudaStream_t stream) {
  const int group = static_cast<int>(desc.h / desc.kv_heads());
  dispatch_16bit(desc.dtype, [&](auto tag) {
    using T = decltype(tag);
    single_key_forward_kernel<T>
        <<<dim3(static_cast<unsigned>(desc.h), static_cast<unsigned>(desc.b)), 32, 0, stream>>>(
            static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
            static_cast<T*>(o), stats, strides_of(desc.q_stride), strides_of(desc.k_stride),
            strides_of(desc.v_stride), strides_of(desc.o_stride), static_cast<int>(desc.h), group,
            static_cast<int>(desc.d), static_cast<float>(desc.scale));
    CUDA_CHECK_LAUNCH("single_key_forward_kernel");
  });
}

void single_key_backward(const SdpaDesc& desc, const void* dout, void* dq, void* dk, void* dv,
                         cudaStream_t stream) {
  const int group = static_cast<int>(desc.h / desc.kv_heads());
  dispatch_16bit(desc.dtype, [&](auto tag) {
    using T = decltype(tag);
    single_key_backward_kernel<T>
        <<<dim3(static_cast<unsigned>(desc.kv_heads()), static_cast<unsigned>(desc.b)), 32, 0,
           stream>>>(static_cast<const T*>(dout), static_cast<T*>(dq), static_cast<T*>(dk),
                     static_cast<T*>(dv), strides_of(stride_or(desc.do_stride, desc.o_stride)),
                     strides_of(stride_or(desc.dq_stride, desc.q_stride)),
                     strides_of(stride_or(desc.dk_stride, desc.k_stride)),
                     strides_of(stride_or(desc.dv_stride, desc.v_stride)), group,
                     static_cast<int>(desc.d));
    CUDA_CHECK_LAUNCH("single_key_backward_kernel");
  });
}

}  // namespace lighthouse::cuda
