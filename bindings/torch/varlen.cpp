// Packed documents in the op (docs/SPEC.md, "Packed documents"): the varlen counterparts of
// attention / attention_forward / attention_backward, with `cu_seqlens` (int32 [docs + 1] on the
// tensors' device) after v:
//
//   attention_varlen(q, k, v, cu_seqlens, levels, pool, topk, scale, selection, scorer,
//                    dilation) -> out                                   (differentiable)
//   attention_varlen_forward(...) -> (out, ctx)
//   attention_varlen_backward(dout, ctx, cu_seqlens, levels, ..., kv_heads) -> (dq, dk, dv)
//
// Their own ops rather than an optional argument of attention(), so that the existing schemas
// stay as they are. The meta kernel sizes the context with context_bytes_varlen() from the
// shapes and the number of offsets alone (torch.compile never reads the offsets' values).
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <c10/core/DeviceGuard.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "convert.hpp"
#include "saved_config.hpp"

namespace lighthouse::torch_op {

namespace {

// cu_seqlens as the library reads it: int32, rank 1, contiguous, on `like`'s device (the
// library names cu_seqlens for any other dtype, rank or device).
TensorView offsets_view(const at::Tensor& cu) {
  TensorView view;
  view.data = cu.data_ptr();
  view.device = cu.is_cuda() ? Device::kCUDA : Device::kCPU;
  view.rank = static_cast<int>(cu.dim());
  for (int d = 0; d < view.rank && d < kMaxRank; ++d) {
    view.shape[d] = cu.size(d);
    view.strides[d] = cu.stride(d);
  }
  view.dtype = cu.scalar_type() == at::kInt    ? DType::kInt32
               : cu.scalar_type() == at::kLong ? DType::kInt64
                                               : DType::kFloat32;
  if (cu.scalar_type() != at::kInt && cu.scalar_type() != at::kLong) {
    throw InvalidArgument("cu_seqlens", std::string("dtype ") + c10::toString(cu.scalar_type()),
                          "must be int32 (torch.int32), FlashAttention's varlen offsets");
  }
  return view;
}

std::int64_t documents_of(const at::Tensor& cu) {
  if (cu.dim() != 1) {
    throw InvalidArgument("cu_seqlens", std::to_string(cu.dim()) + " dimensions",
                          "must be a rank-1 int32 tensor of documents + 1 offsets");
  }
  return cu.sym_size(0).guard_int(__FILE__, __LINE__) - 1;
}

// [B, N, H, D] sizes, concrete (symbolic sizes are specialised, as in meta.cpp).
std::vector<std::int64_t> concrete_sizes(const char* name, const at::Tensor& t) {
  if (t.dim() != 4) {
    throw InvalidArgument(name, std::to_string(t.dim()) + " dimensions",
                          "must be a rank-4 [B, N, H, D] tensor");
  }
  std::vector<std::int64_t> sizes(4);
  for (int d = 0; d < 4; ++d) sizes[d] = t.sym_size(d).guard_int(__FILE__, __LINE__);
  return sizes;
}

std::size_t varlen_context_bytes(const Config& config, const at::Tensor& q, const at::Tensor& k,
                                 const at::Tensor& cu) {
  const std::int64_t docs = documents_of(cu);
  const auto s = concrete_sizes("q", q), ks = concrete_sizes("k", k);
  return context_bytes_varlen(config, s[0] * s[1], docs < 1 ? 1 : docs, s[2], ks[2], s[3],
                              dtype_from("q.dtype", q.scalar_type()));
}

std::tuple<at::Tensor, at::Tensor> forward_kernel(const at::Tensor& q_in, const at::Tensor& k_in,
                                                  const at::Tensor& v_in, const at::Tensor& cu_in,
                                                  std::int64_t levels, std::int64_t pool,
                                                  std::int64_t topk, std::optional<double> scale,
                                                  c10::string_view selection,
                                                  c10::string_view scorer, std::int64_t dilation) {
  return translate_errors([&] {
    const c10::OptionalDeviceGuard guard(q_in.device());
    const Config config = make_config(levels, pool, topk, scale, selection, scorer, dilation);
    const at::Tensor q = readable(q_in), k = readable(k_in), v = readable(v_in);
    const at::Tensor cu = cu_in.contiguous();
    const TensorView qv = view_of("q", q), kv = view_of("k", k), vv = view_of("v", v);
    at::Tensor out = new_like_bnhd(q);
    at::Tensor ctx = at::empty({static_cast<std::int64_t>(varlen_context_bytes(config, q, k, cu))},
                               q.options().dtype(at::kByte));
    lighthouse::forward(config, qv, kv, vv, view_of("out", out), offsets_view(cu),
                        ContextBuffer{ctx.data_ptr(), static_cast<std::size_t>(ctx.numel())},
                        options_for(q));
    return std::make_tuple(out, ctx);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_kernel(
    const at::Tensor& dout_in, const at::Tensor& ctx_in, const at::Tensor& cu_in,
    std::int64_t levels, std::int64_t pool, std::int64_t topk, std::optional<double> scale,
    c10::string_view selection, c10::string_view scorer, std::int64_t dilation,
    std::int64_t kv_heads) {
  return translate_errors([&] {
    const c10::OptionalDeviceGuard guard(dout_in.device());
    const Config config = make_config(levels, pool, topk, scale, selection, scorer, dilation);
    const at::Tensor dout = readable(dout_in);
    const at::Tensor cu = cu_in.contiguous();
    const at::Tensor ctx = backward_context(ctx_in, dout, "attention_varlen_forward");
    auto [dq, dk, dv] = new_gradients(dout, kv_heads);
    lighthouse::backward(config, offsets_view(cu),
                         ContextBuffer{ctx.data_ptr(), static_cast<std::size_t>(ctx.numel())},
                         view_of("dout", dout), view_of("dq", dq), view_of("dk", dk),
                         view_of("dv", dv), options_for(dout));
    return std::make_tuple(dq, dk, dv);
  });
}

std::tuple<at::Tensor, at::Tensor> forward_meta(const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& /*v*/, const at::Tensor& cu,
                                                std::int64_t levels, std::int64_t pool,
                                                std::int64_t topk, std::optional<double> scale,
                                                c10::string_view selection, c10::string_view scorer,
                                                std::int64_t dilation) {
  return translate_errors([&] {
    const Config config = make_config(levels, pool, topk, scale, selection, scorer, dilation);
    at::Tensor ctx = at::empty({static_cast<std::int64_t>(varlen_context_bytes(config, q, k, cu))},
                               q.options().dtype(at::kByte));
    return std::make_tuple(at::empty(concrete_sizes("q", q), q.options()), ctx);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_meta(
    const at::Tensor& dout, const at::Tensor& /*ctx*/, const at::Tensor& /*cu*/,
    std::int64_t levels, std::int64_t pool, std::int64_t topk, std::optional<double> scale,
    c10::string_view selection, c10::string_view scorer, std::int64_t dilation,
    std::int64_t kv_heads) {
  return translate_errors([&] {
    make_config(levels, pool, topk, scale, selection, scorer, dilation);
    const auto sizes = concrete_sizes("dout", dout);
    auto kv_sizes = sizes;
    if (kv_heads != 0) kv_sizes[2] = kv_heads;
    return std::make_tuple(at::empty(sizes, dout.options()), at::empty(kv_sizes, dout.options()),
                           at::empty(kv_sizes, dout.options()));
  });
}

const auto& forward_op() {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("lighthouse::attention_varlen_forward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
              std::int64_t, std::int64_t, std::int64_t, std::optional<double>, c10::string_view,
              c10::string_view, std::int64_t)>();
  return op;
}

const auto& backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("lighthouse::attention_varlen_backward", "")
                             .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                                 const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                 std::int64_t, std::int64_t, std::int64_t, std::optional<double>,
                                 c10::string_view, c10::string_view, std::int64_t, std::int64_t)>();
  return op;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class VarlenAttention : public torch::autograd::Function<VarlenAttention> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, const at::Tensor& cu, std::int64_t levels,
                            std::int64_t pool, std::int64_t topk, std::optional<double> scale,
                            c10::string_view selection, c10::string_view scorer,
                            std::int64_t dilation) {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [out, context] =
        forward_op().call(q, k, v, cu, levels, pool, topk, scale, selection, scorer, dilation);
    ctx->save_for_backward({context, cu});
    save_config(ctx, levels, pool, topk, scale, selection, scorer, dilation, k.size(2));
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved_tensors = ctx->get_saved_variables();
    const SavedConfig c = load_config(ctx);
    auto [dq, dk, dv] =
        backward_op().call(grads[0], saved_tensors[0], saved_tensors[1], c.levels, c.pool, c.topk,
                           c.scale, c.selection, c.scorer, c.dilation, c.kv_heads);
    // No gradient for cu_seqlens and the configuration.
    return {dq,           dk,           dv,           at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor attention_autograd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& cu, std::int64_t levels, std::int64_t pool,
                              std::int64_t topk, std::optional<double> scale,
                              c10::string_view selection, c10::string_view scorer,
                              std::int64_t dilation) {
  return VarlenAttention::apply(q, k, v, cu, levels, pool, topk, scale, selection, scorer,
                                dilation);
}

at::Tensor attention_plain(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& cu, std::int64_t levels, std::int64_t pool,
                           std::int64_t topk, std::optional<double> scale,
                           c10::string_view selection, c10::string_view scorer,
                           std::int64_t dilation) {
  return std::get<0>(
      forward_op().call(q, k, v, cu, levels, pool, topk, scale, selection, scorer, dilation));
}

void register_device_kernels(torch::Library& m) {
  m.impl("attention_varlen_forward", &forward_kernel);
  m.impl("attention_varlen_backward", &backward_kernel);
}

}  // namespace

}  // namespace lighthouse::torch_op

TORCH_LIBRARY_FRAGMENT(lighthouse, m) {
  const std::vector<at::Tag> compliant{at::Tag::pt2_compliant_tag};
  m.def(
      "attention_varlen(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, int levels=3, "
      "int pool=2, int topk=1536, float? scale=None, str selection=\"original\", "
      "str scorer=\"norm\", int dilation=4) -> Tensor",
      compliant);
  m.def(
      "attention_varlen_forward(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, int levels, "
      "int pool, int topk, float? scale=None, str selection=\"original\", str scorer=\"norm\", "
      "int dilation=4) -> (Tensor out, Tensor ctx)",
      compliant);
  m.def(
      "attention_varlen_backward(Tensor dout, Tensor ctx, Tensor cu_seqlens, int levels, "
      "int pool, int topk, float? scale=None, str selection=\"original\", str scorer=\"norm\", "
      "int dilation=4, int kv_heads=0) -> (Tensor dq, Tensor dk, Tensor dv)",
      compliant);
}

TORCH_LIBRARY_IMPL(lighthouse, CPU, m) {
  lighthouse::torch_op::register_device_kernels(m);
}

#ifdef LIGHTHOUSE_WITH_CUDA
TORCH_LIBRARY_IMPL(lighthouse, CUDA, m) {
  lighthouse::torch_op::register_device_kernels(m);
}
#endif

TORCH_LIBRARY_IMPL(lighthouse, Meta, m) {
  m.impl("attention_varlen_forward", &lighthouse::torch_op::forward_meta);
  m.impl("attention_varlen_backward", &lighthouse::torch_op::backward_meta);
}

TORCH_LIBRARY_IMPL(lighthouse, Autograd, m) {
  m.impl("attention_varlen", &lighthouse::torch_op::attention_autograd);
}

TORCH_LIBRARY_IMPL(lighthouse, CompositeExplicitAutograd, m) {
  m.impl("attention_varlen", &lighthouse::torch_op::attention_plain);
}
