// The attention stage's entry points on CUDA: the checks every dtype shares, then bfloat16 and
// float16 to cuDNN (cudnn_attention.cpp), except one-token sequences, which cuDNN rejects
// (single_key_attention.cu), and float32 to the reference kernels (reference_attention.cu).
#include "cuda/attention.hpp"

#include <cmath>
#include <string>
#include <utility>

#include "cuda/cudnn_attention.hpp"
#include "cuda/reference_attention.hpp"
#include "cuda/single_key_attention.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cuda {

namespace {

void check_dims(const SdpaDesc& desc) {
  const std::pair<const char*, std::int64_t> dims[] = {
      {"desc.b", desc.b}, {"desc.h", desc.h}, {"desc.s", desc.s}, {"desc.d", desc.d}};
  for (const auto& [name, value] : dims) {
    if (value < 1) throw InvalidArgument(name, std::to_string(value), "must be >= 1");
  }
  if (desc.h_kv < 0 || desc.h % desc.kv_heads() != 0) {
    throw InvalidArgument("desc.h_kv", std::to_string(desc.h_kv),
                          "must divide desc.h = " + std::to_string(desc.h) + " (or be 0)");
  }
  if (!std::isfinite(desc.scale) || desc.scale <= 0) {
    throw InvalidArgument("desc.scale", std::to_string(desc.scale), "must be finite and > 0");
  }
  if (desc.dtype != DType::kBFloat16 && desc.dtype != DType::kFloat16 &&
      desc.dtype != DType::kFloat32) {
    throw InvalidArgument("desc.dtype", dtype_name(desc.dtype),
                          "dense attention supports bfloat16, float16 and float32");
  }
}

void check_pointer(const char* name, const void* ptr) {
  if (ptr == nullptr) throw InvalidArgument(name, "null", "must point to device memory");
}

}  // namespace

SdpaDesc gathered_sdpa_desc(const Geometry& g, DType dtype, double scale, bool deterministic) {
  SdpaDesc d;
  d.deterministic = deterministic;
  d.b = g.batch;
  d.h = g.heads;
  d.h_kv = g.heads / g.group;
  d.s = g.S;
  d.d = g.head_dim;
  d.dtype = dtype;
  d.scale = scale;
  const std::array<std::int64_t, 4> contiguous{g.heads * g.S * g.head_dim, g.S * g.head_dim,
                                               g.head_dim, 1};
  const std::array<std::int64_t, 4> kv_contiguous{d.h_kv * g.S * g.head_dim, g.S * g.head_dim,
                                                  g.head_dim, 1};
  d.q_stride = d.o_stride = contiguous;
  d.k_stride = d.v_stride = kv_contiguous;
  return d;
}

SdpaDesc token_sdpa_desc(const Plan& plan, DType dtype, const TensorView& q, const TensorView& k,
                         const TensorView& v, const TensorView& out, bool deterministic) {
  SdpaDesc d;
  d.b = plan.batch;
  d.h = plan.heads;
  d.h_kv = plan.kv_heads;
  d.s = plan.seq;
  d.d = plan.head_dim;
  d.dtype = dtype;
  d.scale = plan.scale;
  d.deterministic = deterministic;
  d.q_stride = bhsd_strides(q);
  d.k_stride = bhsd_strides(k);
  d.v_stride = bhsd_strides(v);
  d.o_stride = bhsd_strides(out);
  return d;
}

void sdpa_forward(const SdpaDesc& desc, const void* q, const void* k, const void* v, void* o,
                  float* stats, cudaStream_t stream) {
  check_dims(desc);
  check_pointer("q", q);
  check_pointer("k", k);
  check_pointer("v", v);
  check_pointer("o", o);
  check_pointer("stats", stats);
  if (desc.dtype == DType::kFloat32) {
    reference_attention_forward(desc, static_cast<const float*>(q), static_cast<const float*>(k),
                                static_cast<const float*>(v), static_cast<float*>(o), stats,
                                stream);
    return;
  }
  if (desc.s == 1) {
    single_key_forward(desc, q, k, v, o, stats, stream);
    return;
  }
  cudnn_sdpa_forward(desc, q, k, v, o, stats, stream);
}

void sdpa_backward(const SdpaDesc& desc, const void* q, const void* k, const void* v, const void* o,
                   const void* dout, const float* stats, void* dq, void* dk, void* dv,
                   cudaStream_t stream) {
  check_dims(desc);
  check_pointer("q", q);
  check_pointer("k", k);
  check_pointer("v", v);
  check_pointer("o", o);
  check_pointer("dout", dout);
  check_pointer("stats", stats);
  check_pointer("dq", dq);
  check_pointer("dk", dk);
  check_pointer("dv", dv);
  if (desc.dtype == DType::kFloat32) {
    reference_attention_backward(desc, static_cast<const float*>(q), static_cast<const float*>(k),
                                 static_cast<const float*>(v), static_cast<const float*>(o),
                                 static_cast<const float*>(dout), stats, static_cast<float*>(dq),
                                 static_cast<float*>(dk), static_cast<float*>(dv), stream);
    return;
  }
  if (desc.s == 1) {
    single_key_backward(desc, dout, dq, dk, dv, stream);
    return;
  }
  cudnn_sdpa_backward(desc, q, k, v, o, dout, stats, dq, dk, dv, stream);
}

}  // namespace lighthouse::cuda
