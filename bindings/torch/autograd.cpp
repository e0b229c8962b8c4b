// attention() for autograd: attention_forward saves its context tensor, attention_backward reads
// it. Both are ops of their own, so that torch.compile records them (with their meta kernels)
// in the forward and backward graphs instead of breaking the graph at a Python function.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include "saved_config.hpp"

namespace lighthouse::torch_op {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const auto& forward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("lighthouse::attention_forward", "")
                             .typed<std::tuple<at::Tensor, at::Tensor>(
                                 const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                 std::int64_t, std::int64_t, std::int64_t, std::optional<double>,
                                 c10::string_view, c10::string_view, std::int64_t)>();
  return op;
}

const auto& backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("lighthouse::attention_backward", "")
                             .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                                 const at::Tensor&, const at::Tensor&, std::int64_t, std::int64_t,
                                 std::int64_t, std::optional<double>, c10::string_view,
                                 c10::string_view, std::int64_t, std::int64_t)>();
  return op;
}

class Attention : public torch::autograd::Function<Attention> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v, std::int64_t levels, std::int64_t pool,
                            std::int64_t topk, std::optional<double> scale,
                            c10::string_view selection, c10::string_view scorer,
                            std::int64_t dilation) {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [out, context] =
        forward_op().call(q, k, v, levels, pool, topk, scale, selection, scorer, dilation);
    ctx->save_for_backward({context});
    save_config(ctx, levels, pool, topk, scale, selection, scorer, dilation, k.size(2));
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor context = ctx->get_saved_variables()[0];
    const SavedConfig c = load_config(ctx);
    auto [dq, dk, dv] = backward_op().call(grads[0], context, c.levels, c.pool, c.topk, c.scale,
                                           c.selection, c.scorer, c.dilation, c.kv_heads);
    // No gradient for levels, pool, topk, scale, selection, scorer and dilation.
    return {dq,           dk,           dv,           at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor attention_autograd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              std::int64_t levels, std::int64_t pool, std::int64_t topk,
                              std::optional<double> scale, c10::string_view selection,
                              c10::string_view scorer, std::int64_t dilation) {
  return Attention::apply(q, k, v, levels, pool, topk, scale, selection, scorer, dilation);
}

// Below autograd (inference mode, or any backend key): the forward alone.
at::Tensor attention_plain(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           std::int64_t levels, std::int64_t pool, std::int64_t topk,
                           std::optional<double> scale, c10::string_view selection,
                           c10::string_view scorer, std::int64_t dilation) {
  return std::get<0>(
      forward_op().call(q, k, v, levels, pool, topk, scale, selection, scorer, dilation));
}

}  // namespace

}  // namespace lighthouse::torch_op

TORCH_LIBRARY_IMPL(lighthouse, Autograd, m) {
  m.impl("attention", &lighthouse::torch_op::attention_autograd);
}

TORCH_LIBRARY_IMPL(lighthouse, CompositeExplicitAutograd, m) {
  m.impl("attention", &lighthouse::torch_op::attention_plain);
}
