// Backend-neutral entry points: validate everything the spec asks for, then hand the call to the
// backend of the tensors' device. Backends only ever see validated plans and views.
#include "lighthouse/attention.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/context_parallel.hpp"
#include "core/padding.hpp"
#include "core/varlen.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse {

namespace {

void check_bnhd(const char* name, const TensorView& t) {
  if (t.rank != 4) {
    throw InvalidArgument(name, t.shape_string(), "must be a rank-4 [B, N, H, D] tensor");
  }
  for (int d = 0; d < 4; ++d) {
    if (t.shape[d] < 1) {
      throw InvalidArgument(name, t.shape_string(), "every dimension must be >= 1");
    }
  }
  if (t.strides[3] != 1) {
    throw InvalidArgument(std::string(name) + ".stride(3)", std::to_string(t.strides[3]),
                          "the head dimension D must be contiguous (stride 1)");
  }
  if (t.data == nullptr) throw InvalidArgument(name, "null", "data pointer must not be null");
}

void check_like(const char* name, const TensorView& t, const char* ref_name,
                const TensorView& ref) {
  check_bnhd(name, t);
  if (t.shape != ref.shape) {
    throw InvalidArgument(
        name, t.shape_string(),
        std::string("must have the shape of ") + ref_name + " " + ref.shape_string());
  }
  if (t.dtype != ref.dtype) {
    throw InvalidArgument(
        std::string(name) + ".dtype", dtype_name(t.dtype),
        std::string("must equal ") + ref_name + ".dtype " + dtype_name(ref.dtype));
  }
  if (t.device != ref.device) {
    throw InvalidArgument(
        std::string(name) + ".device", device_name(t.device),
        std::string("must equal ") + ref_name + ".device " + device_name(ref.device));
  }
}

// k and v (or dk and dv): [B, N, Hkv, D] like `ref` ([B, N, H, D]) but for the head count, which
// make_plan() checks (Hkv must divide H).
void check_kv(const char* name, const TensorView& t, const char* ref_name, const TensorView& ref) {
  check_bnhd(name, t);
  if (t.shape[0] != ref.shape[0] || t.shape[1] != ref.shape[1] || t.shape[3] != ref.shape[3]) {
    throw InvalidArgument(name, t.shape_string(),
                          std::string("must have the shape [B, N, Hkv, D] with B, N and D of ") +
                              ref_name + " " + ref.shape_string() +
                              " (Hkv, the KV heads, dividing H)");
  }
  TensorView like = ref;
  like.shape[2] = t.shape[2];
  check_like(name, t, ref_name, like);
}

template <typename T>
void check_finite_host(const char* name, const TensorView& t, const T* base) {
  for (std::int64_t b = 0; b < t.shape[0]; ++b)
    for (std::int64_t n = 0; n < t.shape[1]; ++n)
      for (std::int64_t h = 0; h < t.shape[2]; ++h) {
        const T* row = base + b * t.strides[0] + n * t.strides[1] + h * t.strides[2];
        for (std::int64_t d = 0; d < t.shape[3]; ++d) {
          if (!std::isfinite(static_cast<double>(row[d]))) {
            throw InvalidArgument(name,
                                  "non-finite value at [" + std::to_string(b) + ", " +
                                      std::to_string(n) + ", " + std::to_string(h) + ", " +
                                      std::to_string(d) + "]",
                                  "inputs must be finite (check_finite is on)");
          }
        }
      }
}

// Host tensors are checked here; a device backend checks its own tensors on the device (the
// CUDA backend counts NaN/Inf elements with a kernel before it launches anything else).
void check_finite(const char* name, const TensorView& t) {
  if (t.device != Device::kCPU) return;
  switch (t.dtype) {
    case DType::kFloat32:
      check_finite_host(name, t, t.data_as<const float>());
      break;
    case DType::kFloat64:
      check_finite_host(name, t, t.data_as<const double>());
      break;
    default:
      break;  // other dtypes are rejected by the backend
  }
}

void check_threads(const Options& options) {
  if (options.threads < 0) {
    throw InvalidArgument("threads", std::to_string(options.threads), "must be >= 0 (0 = all)");
  }
}

void reject_comm_with_buffer(const Options& options) {
  if (options.comm) {
    throw InvalidArgument("comm", "set",
                          "context parallelism needs a lighthouse::Context, not a ContextBuffer "
                          "(frameworks run the rank-local stages of context_parallel.hpp)");
  }
}

// "[B, N, H, D]" of a plan, for messages.
std::string shape_of(const Plan& plan) {
  return "[" + std::to_string(plan.batch) + ", " + std::to_string(plan.seq) + ", " +
         std::to_string(plan.heads) + ", " + std::to_string(plan.head_dim) + "]";
}

}  // namespace

std::vector<std::int32_t> Context::indices() const {
  if (!state_) throw InvalidArgument("ctx", "undefined", "forward() must run first");
  const CpState* cp = as_cp_state(*state_);
  const VarlenState* varlen = as_varlen_state(*state_);
  std::vector<std::int32_t> out(
      cp       ? cp_index_count(*cp)
      : varlen ? varlen_index_count(*varlen)
               : static_cast<std::size_t>(plan_.batch * plan_.kv_heads * plan_.S));
  state_->copy_indices(out.data());
  return out;
}

namespace {

// The tensors and options of a forward, before any plan.
void validate_forward_views(const TensorView& q, const TensorView& k, const TensorView& v,
                            const TensorView& out, const Options& options) {
  check_bnhd("q", q);
  check_kv("k", k, "q", q);
  check_like("v", v, "k", k);
  check_like("out", out, "q", q);
  check_threads(options);
}

// Everything forward() checks before any work; returns the plan.
Plan validate_forward(const Config& config, const TensorView& q, const TensorView& k,
                      const TensorView& v, const TensorView& out, const Options& options) {
  validate_forward_views(q, k, v, out, options);
  Plan plan = make_plan(config, q.shape[0], q.shape[1], q.shape[2], q.shape[3], k.shape[2]);
  backend_for(q.device).check_supported(plan, q.dtype);
  if (options.check_finite) {
    check_finite("q", q);
    check_finite("k", k);
    check_finite("v", v);
  }
  return plan;
}

// dq, dk, dv against dout and the plan's KV heads, and the options (dout itself is checked by the
// caller).
void validate_gradients(const Plan& plan, const TensorView& dout, const TensorView& dq,
                        const TensorView& dk, const TensorView& dv, const Options& options) {
  check_like("dq", dq, "dout", dout);
  check_kv("dk", dk, "dout", dout);
  if (dk.shape[2] != plan.kv_heads) {
    throw InvalidArgument(
        "dk", dk.shape_string(),
        "must have the shape of the forward's k: " + std::to_string(plan.kv_heads) + " KV heads");
  }
  check_like("dv", dv, "dk", dk);
  check_threads(options);
  if (options.check_finite) check_finite("dout", dout);
}

void check_buffer(const ContextBuffer& ctx, const Plan& plan, DType dtype) {
  if (ctx.data == nullptr) {
    throw InvalidArgument("ctx.data", "null", "a context buffer must point to device memory");
  }
  const auto address = reinterpret_cast<std::uintptr_t>(ctx.data);
  if (address % kContextAlignment != 0) {
    char text[32];
    std::snprintf(text, sizeof text, "%p", ctx.data);
    throw InvalidArgument("ctx.data", text,
                          "must be " + std::to_string(kContextAlignment) + "-byte aligned");
  }
  const std::size_t needed = context_bytes(plan, dtype);
  if (ctx.bytes < needed) {
    throw InvalidArgument("ctx.bytes", std::to_string(ctx.bytes),
                          "must be at least context_bytes(plan, " + std::string(dtype_name(dtype)) +
                              ") = " + std::to_string(needed) + " for " + shape_of(plan));
  }
}

// Any sequence length: q, k, v copied into zero-padded scratch tensors of the plan's padded
// length, and a scratch output whose first N rows are copied back.
struct Padded {
  PaddedTensor q, k, v, out;
  Padded(Backend& backend, const Plan& plan, const TensorView& q_in, const TensorView& k_in,
         const TensorView& v_in, const TensorView& out_in, const Options& options)
      : q(backend, q_in, plan.padded_seq, options),
        k(backend, k_in, plan.padded_seq, options),
        v(backend, v_in, plan.padded_seq, options),
        out(backend, out_in, plan.padded_seq, options) {
    q.fill_from(q_in);
    k.fill_from(k_in);
    v.fill_from(v_in);
  }
};

// The backward's counterpart: dout padded with zeros (no gradient flows from the padding), and
// scratch gradients whose first N rows are copied back.
struct PaddedGradients {
  PaddedTensor dout, dq, dk, dv;
  PaddedGradients(Backend& backend, const Plan& plan, const TensorView& dout_in,
                  const TensorView& dq_in, const TensorView& dk_in, const Options& options)
      : dout(backend, dout_in, plan.padded_seq, options),
        dq(backend, dq_in, plan.padded_seq, options),
        dk(backend, dk_in, plan.padded_seq, options),
        dv(backend, dk_in, plan.padded_seq, options) {  // dv has dk's shape
    dout.fill_from(dout_in);
  }
  void copy_to(const TensorView& dq_out, const TensorView& dk_out, const TensorView& dv_out) {
    dq.copy_to(dq_out);
    dk.copy_to(dk_out);
    dv.copy_to(dv_out);
  }
};

// Packed documents: everything forward() checks, cu_seqlens' rules, and the documents' groups.
Packing validate_varlen_forward(const Config& config, const TensorView& q, const TensorView& k,
                                const TensorView& v, const TensorView& out,
                                const TensorView& cu_seqlens, const Options& options, Plan& whole) {
  if (options.comm) {
    throw InvalidArgument("cu_seqlens", "given with Options::comm",
                          "packed documents do not run with context parallelism (documents would "
                          "cross the ranks' chunks): pass one or the other");
  }
  whole = validate_forward(config, q, k, v, out, options);
  Backend& backend = backend_for(q.device);
  backend.synchronize_stream(options.stream);  // the offsets may still be written on the stream
  const std::vector<std::int64_t> offsets =
      read_cu_seqlens(cu_seqlens, q.device, q.shape[0], q.shape[1]);
  return make_packing(config, offsets, q.shape[1], q.shape[2], q.shape[3], k.shape[2], backend,
                      q.dtype);
}

void check_varlen_buffer(const ContextBuffer& ctx, const Plan& whole, const Packing& packing,
                         DType dtype) {
  if (ctx.data == nullptr) {
    throw InvalidArgument("ctx.data", "null", "a context buffer must point to device memory");
  }
  if (reinterpret_cast<std::uintptr_t>(ctx.data) % kContextAlignment != 0) {
    char text[32];
    std::snprintf(text, sizeof text, "%p", ctx.data);
    throw InvalidArgument("ctx.data", text,
                          "must be " + std::to_string(kContextAlignment) + "-byte aligned");
  }
  if (ctx.bytes < packing.context_bytes) {
    const std::size_t bound = context_bytes_varlen(
        whole.config, whole.batch * whole.seq, static_cast<std::int64_t>(packing.documents.size()),
        whole.heads, whole.kv_heads, whole.head_dim, dtype);
    throw InvalidArgument("ctx.bytes", std::to_string(ctx.bytes),
                          "must be at least the " + std::to_string(packing.context_bytes) +
                              " bytes these documents need (context_bytes_varlen() = " +
                              std::to_string(bound) + " always suffices) for " + shape_of(whole));
  }
}

}  // namespace

void forward(const Config& config, const TensorView& q, const TensorView& k, const TensorView& v,
             const TensorView& out, Context& ctx, const Options& options) {
  if (options.comm) {  // context parallelism: q, k, v, out are this rank's shard
    // The checks of this rank's call run inside cp_forward, before the ranks compare their
    // calls, so that a rank's rejection reaches the others instead of leaving them waiting.
    auto local_checks = [&] {
      validate_forward_views(q, k, v, out, options);
      if (k.shape[2] != q.shape[2]) {
        throw InvalidArgument("k", k.shape_string(),
                              "context parallelism supports as many KV heads as query heads only "
                              "so far (grouped-query attention is not sharded yet)");
      }
      if (options.check_finite) {
        check_finite("q", q);
        check_finite("k", k);
        check_finite("v", v);
      }
    };
    ctx.state_.reset();
    Plan plan;
    ctx.state_ = cp_forward(config, q, k, v, out, options, local_checks, plan);
    ctx.plan_ = std::move(plan);
    ctx.device_ = q.device;
    ctx.dtype_ = q.dtype;
    return;
  }
  Plan plan = validate_forward(config, q, k, v, out, options);
  Backend& backend = backend_for(q.device);
  ctx.state_.reset();  // free the previous call's buffers before taking new ones
  if (plan.runs_padded()) {
    Padded padded(backend, plan, q, k, v, out, options);
    ctx.state_ = backend.forward(plan.padded(), padded.q.view(), padded.k.view(), padded.v.view(),
                                 padded.out.view(), options);
    padded.out.copy_to(out);
  } else {
    ctx.state_ = backend.forward(plan, q, k, v, out, options);
  }
  ctx.plan_ = std::move(plan);
  ctx.device_ = q.device;
  ctx.dtype_ = q.dtype;
}

void forward(const Config& config, const TensorView& q, const TensorView& k, const TensorView& v,
             const TensorView& out, const ContextBuffer& ctx, const Options& options) {
  reject_comm_with_buffer(options);
  const Plan plan = validate_forward(config, q, k, v, out, options);
  check_buffer(ctx, plan, q.dtype);
  Backend& backend = backend_for(q.device);
  if (plan.runs_padded()) {
    Padded padded(backend, plan, q, k, v, out, options);
    backend.forward(plan.padded(), padded.q.view(), padded.k.view(), padded.v.view(),
                    padded.out.view(), ctx.data, options);
    padded.out.copy_to(out);
  } else {
    backend.forward(plan, q, k, v, out, ctx.data, options);
  }
}

void backward(const Context& ctx, const TensorView& dout, const TensorView& dq,
              const TensorView& dk, const TensorView& dv, const Options& options) {
  if (!ctx.state_) throw InvalidArgument("ctx", "undefined", "forward() must run first");
  const Plan& plan = ctx.plan_;
  const CpState* cp = as_cp_state(*ctx.state_);
  if (!cp && options.comm) {
    throw InvalidArgument("comm", "set",
                          "the forward ran without context parallelism: backward() must too");
  }
  auto local_checks = [&] {
    check_bnhd("dout", dout);
    // With context parallelism the gradients are this rank's shard, N / cp tokens.
    const std::int64_t seq = cp ? plan.seq / cp_world(*cp) : plan.seq;
    const std::array<std::int64_t, kMaxRank> expected{plan.batch, seq, plan.heads, plan.head_dim};
    if (dout.shape != expected) {
      throw InvalidArgument("dout", dout.shape_string(),
                            "must have the shape of the forward's q [" +
                                std::to_string(plan.batch) + ", " + std::to_string(seq) + ", " +
                                std::to_string(plan.heads) + ", " + std::to_string(plan.head_dim) +
                                "]");
    }
    if (dout.dtype != ctx.dtype_) {
      throw InvalidArgument(
          "dout.dtype", dtype_name(dout.dtype),
          std::string("must equal the forward's dtype ") + dtype_name(ctx.dtype_));
    }
    if (dout.device != ctx.device_) {
      throw InvalidArgument(
          "dout.device", device_name(dout.device),
          std::string("must equal the forward's device ") + device_name(ctx.device_));
    }
    validate_gradients(plan, dout, dq, dk, dv, options);
  };
  if (cp) {  // the checks run inside, before the ranks compare their calls
    cp_backward(*cp, dout, dq, dk, dv, options, local_checks);
    return;
  }
  local_checks();
  Backend& backend = backend_for(ctx.device_);
  if (const VarlenState* varlen = as_varlen_state(*ctx.state_)) {
    varlen_backward(backend, *varlen, dout, dq, dk, dv, options);
    return;
  }
  if (plan.runs_padded()) {
    PaddedGradients padded(backend, plan, dout, dq, dk, options);
    backend.backward(plan.padded(), *ctx.state_, padded.dout.view(), padded.dq.view(),
                     padded.dk.view(), padded.dv.view(), options);
    padded.copy_to(dq, dk, dv);
  } else {
    backend.backward(plan, *ctx.state_, dout, dq, dk, dv, options);
  }
}

void backward(const Config& config, const ContextBuffer& ctx, const TensorView& dout,
              const TensorView& dq, const TensorView& dk, const TensorView& dv,
              const Options& options) {
  reject_comm_with_buffer(options);
  check_bnhd("dout", dout);
  check_bnhd("dk", dk);
  // The KV heads of the forward are dk's (a context buffer does not record them).
  const Plan plan =
      make_plan(config, dout.shape[0], dout.shape[1], dout.shape[2], dout.shape[3], dk.shape[2]);
  Backend& backend = backend_for(dout.device);
  backend.check_supported(plan, dout.dtype);
  validate_gradients(plan, dout, dq, dk, dv, options);
  check_buffer(ctx, plan, dout.dtype);
  if (plan.runs_padded()) {
    PaddedGradients padded(backend, plan, dout, dq, dk, options);
    backend.backward(plan.padded(), ctx.data, padded.dout.view(), padded.dq.view(),
                     padded.dk.view(), padded.dv.view(), options);
    padded.copy_to(dq, dk, dv);
  } else {
    backend.backward(plan, ctx.data, dout, dq, dk, dv, options);
  }
}

void forward(const Config& config, const TensorView& q, const TensorView& k, const TensorView& v,
             const TensorView& out, const TensorView& cu_seqlens, Context& ctx,
             const Options& options) {
  Plan whole;
  const Packing packing = validate_varlen_forward(config, q, k, v, out, cu_seqlens, options, whole);
  ctx.state_.reset();  // free the previous call's buffers before taking new ones
  ctx.state_ = varlen_forward(backend_for(q.device), packing, q, k, v, out, options);
  ctx.plan_ = std::move(whole);
  ctx.device_ = q.device;
  ctx.dtype_ = q.dtype;
}

void forward(const Config& config, const TensorView& q, const TensorView& k, const TensorView& v,
             const TensorView& out, const TensorView& cu_seqlens, const ContextBuffer& ctx,
             const Options& options) {
  Plan whole;
  const Packing packing = validate_varlen_forward(config, q, k, v, out, cu_seqlens, options, whole);
  check_varlen_buffer(ctx, whole, packing, q.dtype);
  varlen_forward(backend_for(q.device), packing, q, k, v, out, ctx.data, options);
}

void backward(const Config& config, const TensorView& cu_seqlens, const ContextBuffer& ctx,
              const TensorView& dout, const TensorView& dq, const TensorView& dk,
              const TensorView& dv, const Options& options) {
  if (options.comm) {
    throw InvalidArgument("cu_seqlens", "given with Options::comm",
                          "packed documents do not run with context parallelism");
  }
  check_bnhd("dout", dout);
  check_bnhd("dk", dk);
  const Plan whole =
      make_plan(config, dout.shape[0], dout.shape[1], dout.shape[2], dout.shape[3], dk.shape[2]);
  Backend& backend = backend_for(dout.device);
  validate_gradients(whole, dout, dq, dk, dv, options);
  backend.synchronize_stream(options.stream);
  const std::vector<std::int64_t> offsets =
      read_cu_seqlens(cu_seqlens, dout.device, dout.shape[0], dout.shape[1]);
  const Packing packing = make_packing(config, offsets, dout.shape[1], dout.shape[2], dout.shape[3],
                                       dk.shape[2], backend, dout.dtype);
  check_varlen_buffer(ctx, whole, packing, dout.dtype);
  varlen_backward(backend, packing, ctx.data, dout, dq, dk, dv, options);
}

}  // namespace lighthouse
