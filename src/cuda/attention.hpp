// The attention stage on the GPU: dense causal attention over [b, h, s, d] tensors, run over the
// gathered rows (levels >= 2) or over the tokens themselves (levels == 1). bfloat16 and float16 go
// to cuDNN's fused flash attention (cudnn_attention.cpp: fp32 accumulation and softmax); float32
// goes to the straightforward reference kernels (reference_attention.cu), which exist so that
// the float32 path can be tested against the CPU.
//
// Layout: q, k, v, o and their gradients are [b, h, s, d] tensors with arbitrary element
// strides, so [b, s, h, d] buffers are passed without a copy. The mask is causal (row i sees
// keys 0..i). stats is float32 [b, h, s] contiguous: the natural-log log-sum-exp of the scaled,
// masked logits of each row, written by the forward and read by the backward.
//
// cuDNN needs, for bf16/fp16: d a multiple of 8 (at most 128, or 256 on Hopper), a unit stride
// on d, the other strides multiples of 8 elements and 16-byte aligned pointers. Violations
// throw lighthouse::InvalidArgument naming the field.
//
// Runs on the calling thread's current device (cudaSetDevice); all work is queued on `stream`;
// nothing here synchronises with the host except the first call for a new shape (graph build) and
// workspace growth.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>

#include "cuda/stages.hpp"
#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::cuda {

// Dense causal attention over [b, h, s, d] tensors with arbitrary element strides.
struct SdpaDesc {
  std::int64_t b = 0, h = 0, s = 0, d = 0;
  // Heads of k and v (and dk, dv): grouped-query attention when below h (it must divide h; query
  // head i reads KV head i / (h / h_kv)); 0 means h.
  std::int64_t h_kv = 0;
  std::int64_t kv_heads() const { return h_kv ? h_kv : h; }
  DType dtype = DType::kBFloat16;  // kBFloat16/kFloat16 -> cuDNN; kFloat32 -> reference kernel
  double scale = 0;
  std::array<std::int64_t, 4> q_stride{}, k_stride{}, v_stride{}, o_stride{};  // (b,h,s,d) element
  // strides. Backward: dout, dq, dk and dv have strides of their own; left all zero (the
  // default) they are those of o, q, k and v.
  std::array<std::int64_t, 4> do_stride{}, dq_stride{}, dk_stride{}, dv_stride{};
  // Backward only (the forward ignores it): cuDNN's deterministic algorithm (bitwise
  // reproducible; on Hopper with cuDNN < 9.25 its workspace is about b * h * s^2 * 2 bytes) or
  // its fast one (dq accumulated with atomics, workspace linear in s). Part of the graph key.
  bool deterministic = true;
};

// A gradient's strides: `own` when set, else `like` (the strides of the tensor it belongs to).
inline std::array<std::int64_t, 4> stride_or(const std::array<std::int64_t, 4>& own,
                                             const std::array<std::int64_t, 4>& like) {
  return own == std::array<std::int64_t, 4>{} ? like : own;
}

// (b, h, s, d) element strides of a [B, N, H, D] view.
inline std::array<std::int64_t, 4> bhsd_strides(const TensorView& t) {
  return {t.strides[0], t.strides[2], t.strides[1], 1};
}

// The attention over the gathered rows of `g`: contiguous [B, H, S, D] tensors (k and v: [B,
// Hkv, S, D]).
SdpaDesc gathered_sdpa_desc(const Geometry& g, DType dtype, double scale, bool deterministic);

// The attention over the tokens of [B, N, H, D] views (levels == 1: no selection). The gradients
// keep the strides of the tensors they belong to unless the caller sets them.
SdpaDesc token_sdpa_desc(const Plan& plan, DType dtype, const TensorView& q, const TensorView& k,
                         const TensorView& v, const TensorView& out, bool deterministic);

// stats: float32 [b, h, s] contiguous: natural-log log-sum-exp of the scaled masked logits per row.
void sdpa_forward(const SdpaDesc& desc, const void* q, const void* k, const void* v, void* o,
                  float* stats, cudaStream_t stream);
// Writes (does not accumulate into) dq, dk and dv. With desc.deterministic (the default) the
// cuDNN backward is the deterministic algorithm: two calls on the same inputs give bitwise equal
// gradients. Its workspace (see SdpaDesc::deterministic) is checked against the device's free
// memory before it is allocated: lighthouse::Error names s, the bytes and the remedy
// (deterministic = false) when it cannot fit. The float32 reference path is always
// deterministic.
void sdpa_backward(const SdpaDesc& desc, const void* q, const void* k, const void* v, const void* o,
                   const void* dout, const float* stats, void* dq, void* dk, void* dv,
                   cudaStream_t stream);

}  // namespace lighthouse::cuda
