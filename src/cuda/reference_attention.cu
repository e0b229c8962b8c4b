// fp32 causal attention, forward and backward, written for clarity rather than speed.
//
// Forward, one block per query row i of one (b, h):
//   pass 1: every thread walks keys j = tid, tid + T, ... <= i keeping a running (max, sum of
//           exp) pair; a fixed-order tree merges the pairs into the row's max m and sum l.
//   pass 2: keys in tiles of T: thread t computes p = exp(logit - m) for one key into shared
//           memory, then thread c adds sum_t p[t] * v[j0 + t, c] to its output channels.
//   o = acc / l, stats = m + log(l).
// Backward with P = exp(logit - stats), dP = dO . v, D = dO . o, dS = P (dP - D):
//   dq kernel, one block per query row i: dq_i = scale * sum_{j <= i} dS_ij k_j.
//   dkv kernel, one block per key row j:  dv_j = sum_{i >= j} P_ij dO_i,
//                                         dk_j = scale * sum_{i >= j} dS_ij q_i.
// The dkv kernel recomputes D_i per pair instead of reading it from a scratch buffer: one more
// length-d dot product, no extra memory. Grouped-query attention (h_kv < h): query head h reads
// K/V head h / group; the dkv kernel runs per K/V head and adds the group's query heads in head
// order (one fixed order, so still deterministic). Logits are recomputed rather than stored, so
// shared memory is a fixed few KiB whatever s is. Every sum has a fixed order: deterministic.
#include "cuda/reference_attention.hpp"

#include <cmath>
#include <string>

#include "cuda/check.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cuda {
namespace {

constexpr int kThreads = 128;  // threads per block = keys (or queries) per tile
constexpr int kMaxChannelsPerThread = 4;
constexpr int kMaxHeadDim = kThreads * kMaxChannelsPerThread;  // 512
constexpr int kMaxGridYZ = 65535;

// Element offsets of one [b, h, s, d] tensor.
struct Strides {
  long long b, h, s, d;
};

Strides to_strides(const std::array<std::int64_t, 4>& st) {
  return {st[0], st[1], st[2], st[3]};
}

__device__ __forceinline__ const float* row_ptr(const float* base, Strides st, long long b,
                                                long long h, long long i) {
  return base + b * st.b + h * st.h + i * st.s;
}
__device__ __forceinline__ float* row_ptr(float* base, Strides st, long long b, long long h,
                                          long long i) {
  return base + b * st.b + h * st.h + i * st.s;
}

// x . y over d channels, x in shared memory (unit stride), y in global memory.
__device__ __forceinline__ float dot_shared(const float* x, const float* y, long long y_stride,
                                            int d) {
  float acc = 0.f;
  for (int c = 0; c < d; ++c) acc += x[c] * y[c * y_stride];
  return acc;
}
__device__ __forceinline__ float dot_global(const float* x, long long x_stride, const float* y,
                                            long long y_stride, int d) {
  float acc = 0.f;
  for (int c = 0; c < d; ++c) acc += x[c * x_stride] * y[c * y_stride];
  return acc;
}

// Fixed-order tree sum over the block; every thread gets the result.
__device__ float block_sum(float value, float* scratch) {
  scratch[threadIdx.x] = value;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) scratch[threadIdx.x] += scratch[threadIdx.x + half];
    __syncthreads();
  }
  const float total = scratch[0];
  __syncthreads();
  return total;
}

// Merges per-thread (max, sum of exp(x - max)) pairs in a fixed order.
__device__ void block_max_sum(float& m, float& l, float* scratch_m, float* scratch_l) {
  scratch_m[threadIdx.x] = m;
  scratch_l[threadIdx.x] = l;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      const float m1 = scratch_m[threadIdx.x], m2 = scratch_m[threadIdx.x + half];
      const float l1 = scratch_l[threadIdx.x], l2 = scratch_l[threadIdx.x + half];
      const float mm = fmaxf(m1, m2);
      // A thread that saw no key holds (-inf, 0); exp(-inf - finite) = 0 keeps it neutral.
      const float ll = (mm == -INFINITY) ? 0.f : l1 * expf(m1 - mm) + l2 * expf(m2 - mm);
      scratch_m[threadIdx.x] = mm;
      scratch_l[threadIdx.x] = ll;
    }
    __syncthreads();
  }
  m = scratch_m[0];
  l = scratch_l[0];
  __syncthreads();
}

struct Params {
  int b, h, s, d;
  int group;  // query heads per K/V head
  float scale;
  Strides q, k, v, o;
  Strides dout, dq, dk, dv;  // backward only
};

__global__ void __launch_bounds__(kThreads)
    forward_kernel(Params p, const float* __restrict__ q, const float* __restrict__ k,
                   const float* __restrict__ v, float* __restrict__ o, float* __restrict__ stats) {
  __shared__ float q_row[kMaxHeadDim];
  __shared__ float probs[kThreads];
  __shared__ float scratch_m[kThreads], scratch_l[kThreads];
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, t = threadIdx.x;
  const int kvh = h / p.group;

  const float* qi = row_ptr(q, p.q, b, h, i);
  for (int c = t; c < p.d; c += kThreads) q_row[c] = qi[c * p.q.d] * p.scale;
  __syncthreads();

  // Pass 1: row max and normaliser.
  float m = -INFINITY, l = 0.f;
  for (int j = t; j <= i; j += kThreads) {
    const float logit = dot_shared(q_row, row_ptr(k, p.k, b, kvh, j), p.k.d, p.d);
    if (logit > m) {
      l = l * expf(m - logit) + 1.f;
      m = logit;
    } else {
      l += expf(logit - m);
    }
  }
  block_max_sum(m, l, scratch_m, scratch_l);

  // Pass 2: probabilities tile by tile, weighted sum of v.
  float acc[kMaxChannelsPerThread] = {};
  for (int j0 = 0; j0 <= i; j0 += kThreads) {
    const int j = j0 + t;
    probs[t] = (j <= i) ? expf(dot_shared(q_row, row_ptr(k, p.k, b, kvh, j), p.k.d, p.d) - m) : 0.f;
    __syncthreads();
    const int tile = min(kThreads, i - j0 + 1);
    for (int n = 0; n < kMaxChannelsPerThread; ++n) {
      const int c = t + n * kThreads;
      if (c >= p.d) break;
      float sum = 0.f;
      for (int jj = 0; jj < tile; ++jj)
        sum += probs[jj] * row_ptr(v, p.v, b, kvh, j0 + jj)[c * p.v.d];
      acc[n] += sum;
    }
    __syncthreads();
  }

  float* oi = row_ptr(o, p.o, b, h, i);
  const float inv_l = 1.f / l;
  for (int n = 0; n < kMaxChannelsPerThread; ++n) {
    const int c = t + n * kThreads;
    if (c >= p.d) break;
    oi[c * p.o.d] = acc[n] * inv_l;
  }
  if (t == 0) stats[(static_cast<long long>(b) * p.h + h) * p.s + i] = m + logf(l);
}

__global__ void __launch_bounds__(kThreads)
    backward_dq_kernel(Params p, const float* __restrict__ q, const float* __restrict__ k,
                       const float* __restrict__ v, const float* __restrict__ o,
                       const float* __restrict__ dout, const float* __restrict__ stats,
                       float* __restrict__ dq) {
  __shared__ float q_row[kMaxHeadDim], do_row[kMaxHeadDim];
  __shared__ float ds[kThreads];
  __shared__ float scratch[kThreads];
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, t = threadIdx.x;
  const int kvh = h / p.group;

  const float* qi = row_ptr(q, p.q, b, h, i);
  const float* doi = row_ptr(dout, p.dout, b, h, i);
  const float* oi = row_ptr(o, p.o, b, h, i);
  float partial = 0.f;
  for (int c = t; c < p.d; c += kThreads) {
    q_row[c] = qi[c * p.q.d] * p.scale;
    do_row[c] = doi[c * p.dout.d];
    partial += do_row[c] * oi[c * p.o.d];
  }
  const float D = block_sum(partial, scratch);  // also orders the shared writes above
  const float lse = stats[(static_cast<long long>(b) * p.h + h) * p.s + i];

  float acc[kMaxChannelsPerThread] = {};
  for (int j0 = 0; j0 <= i; j0 += kThreads) {
    const int j = j0 + t;
    float value = 0.f;
    if (j <= i) {
      const float prob = expf(dot_shared(q_row, row_ptr(k, p.k, b, kvh, j), p.k.d, p.d) - lse);
      const float dp = dot_shared(do_row, row_ptr(v, p.v, b, kvh, j), p.v.d, p.d);
      value = prob * (dp - D);
    }
    ds[t] = value;
    __syncthreads();
    const int tile = min(kThreads, i - j0 + 1);
    for (int n = 0; n < kMaxChannelsPerThread; ++n) {
      const int c = t + n * kThreads;
      if (c >= p.d) break;
      float sum = 0.f;
      for (int jj = 0; jj < tile; ++jj) sum += ds[jj] * row_ptr(k, p.k, b, kvh, j0 + jj)[c * p.k.d];
      acc[n] += sum;
    }
    __syncthreads();
  }

  float* dqi = row_ptr(dq, p.dq, b, h, i);
  for (int n = 0; n < kMaxChannelsPerThread; ++n) {
    const int c = t + n * kThreads;
    if (c >= p.d) break;
    dqi[c * p.dq.d] = acc[n] * p.scale;
  }
}

__global__ void __launch_bounds__(kThreads)
    backward_dkv_kernel(Params p, const float* __restrict__ q, const float* __restrict__ k,
                        const float* __restrict__ v, const float* __restrict__ o,
                        const float* __restrict__ dout, const float* __restrict__ stats,
                        float* __restrict__ dk, float* __restrict__ dv) {
  __shared__ float k_row[kMaxHeadDim], v_row[kMaxHeadDim];
  __shared__ float probs[kThreads], ds[kThreads];
  // One block per key row j of K/V head kvh; the group's query heads in order.
  const int j = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z, t = threadIdx.x;

  const float* kj = row_ptr(k, p.k, b, kvh, j);
  const float* vj = row_ptr(v, p.v, b, kvh, j);
  for (int c = t; c < p.d; c += kThreads) {
    k_row[c] = kj[c * p.k.d] * p.scale;
    v_row[c] = vj[c * p.v.d];
  }
  __syncthreads();

  float acc_k[kMaxChannelsPerThread] = {}, acc_v[kMaxChannelsPerThread] = {};
  for (int h = kvh * p.group; h < (kvh + 1) * p.group; ++h) {
    const float* lse_row = stats + (static_cast<long long>(b) * p.h + h) * p.s;
    for (int i0 = j; i0 < p.s; i0 += kThreads) {
      const int i = i0 + t;
      float prob = 0.f, value = 0.f;
      if (i < p.s) {
        const float* doi = row_ptr(dout, p.dout, b, h, i);
        prob = expf(dot_shared(k_row, row_ptr(q, p.q, b, h, i), p.q.d, p.d) - lse_row[i]);
        const float dp = dot_shared(v_row, doi, p.dout.d, p.d);
        const float D = dot_global(doi, p.dout.d, row_ptr(o, p.o, b, h, i), p.o.d, p.d);
        value = prob * (dp - D);
      }
      probs[t] = prob;
      ds[t] = value;
      __syncthreads();
      const int tile = min(kThreads, p.s - i0);
      for (int n = 0; n < kMaxChannelsPerThread; ++n) {
        const int c = t + n * kThreads;
        if (c >= p.d) break;
        float sum_k = 0.f, sum_v = 0.f;
        for (int ii = 0; ii < tile; ++ii) {
          sum_v += probs[ii] * row_ptr(dout, p.dout, b, h, i0 + ii)[c * p.dout.d];
          sum_k += ds[ii] * row_ptr(q, p.q, b, h, i0 + ii)[c * p.q.d];
        }
        acc_k[n] += sum_k;
        acc_v[n] += sum_v;
      }
      __syncthreads();
    }
  }

  float* dkj = row_ptr(dk, p.dk, b, kvh, j);
  float* dvj = row_ptr(dv, p.dv, b, kvh, j);
  for (int n = 0; n < kMaxChannelsPerThread; ++n) {
    const int c = t + n * kThreads;
    if (c >= p.d) break;
    dkj[c * p.dk.d] = acc_k[n] * p.scale;
    dvj[c * p.dv.d] = acc_v[n];
  }
}

void check_positive(const char* name, std::int64_t value, std::int64_t max) {
  if (value < 1 || value > max) {
    throw InvalidArgument(std::string("desc.") + name, std::to_string(value),
                          "the fp32 reference attention needs 1 <= " + std::string(name) +
                              " <= " + std::to_string(max));
  }
}

Params make_params(const SdpaDesc& desc) {
  check_positive("b", desc.b, kMaxGridYZ);
  check_positive("h", desc.h, kMaxGridYZ);
  check_positive("s", desc.s, 0x7fffffff);
  check_positive("d", desc.d, kMaxHeadDim);
  if (!std::isfinite(desc.scale)) {
    throw InvalidArgument("desc.scale", std::to_string(desc.scale), "must be finite");
  }
  return Params{static_cast<int>(desc.b),
                static_cast<int>(desc.h),
                static_cast<int>(desc.s),
                static_cast<int>(desc.d),
                static_cast<int>(desc.h / desc.kv_heads()),
                static_cast<float>(desc.scale),
                to_strides(desc.q_stride),
                to_strides(desc.k_stride),
                to_strides(desc.v_stride),
                to_strides(desc.o_stride),
                to_strides(stride_or(desc.do_stride, desc.o_stride)),
                to_strides(stride_or(desc.dq_stride, desc.q_stride)),
                to_strides(stride_or(desc.dk_stride, desc.k_stride)),
                to_strides(stride_or(desc.dv_stride, desc.v_stride))};
}

}  // namespace

void reference_attention_forward(const SdpaDesc& desc, const float* q, const float* k,
                                 const float* v, float* o, float* stats, cudaStream_t stream) {
  const Params p = make_params(desc);
  const dim3 grid(p.s, p.h, p.b);
  forward_kernel<<<grid, kThreads, 0, stream>>>(p, q, k, v, o, stats);
  CUDA_CHECK_LAUNCH("reference attention forward_kernel");
}

void reference_attention_backward(const SdpaDesc& desc, const float* q, const float* k,
                                  const float* v, const float* o, const float* dout,
                                  const float* stats, float* dq, float* dk, float* dv,
                                  cudaStream_t stream) {
  const Params p = make_params(desc);
  const dim3 grid(p.s, p.h, p.b);
  backward_dq_kernel<<<grid, kThreads, 0, stream>>>(p, q, k, v, o, dout, stats, dq);
  CUDA_CHECK_LAUNCH("reference attention backward_dq_kernel");
  const dim3 kv_grid(p.s, p.h / p.group, p.b);  // one block per key row of each K/V head
  backward_dkv_kernel<<<kv_grid, kThreads, 0, stream>>>(p, q, k, v, o, dout, stats, dk, dv);
  CUDA_CHECK_LAUNCH("reference attention backward_dkv_kernel");
}

}  // namespace lighthouse::cuda
