// Meta kernels: output shapes and dtypes from input shapes alone, which is all that
// torch.compile's fake tensors need to trace a model through the op without running it. The
// context's size is lighthouse::context_bytes(), the same on every device; that is why the
// library offers it as a pure function of the plan.
//
// Sizes must be concrete to make a plan (its rules are divisibility checks): symbolic sizes are
// specialised (a guard: a new length compiles a new graph), never a graph break.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <cstdint>
#include <optional>
#include <tuple>

#include "convert.hpp"

namespace lighthouse::torch_op {

namespace {

std::array<std::int64_t, 4> concrete_bnhd(const char* name, const at::Tensor& t) {
  if (t.dim() != 4) {
    throw InvalidArgument(name, std::to_string(t.dim()) + " dimensions",
                          "must be a rank-4 [B, N, H, D] tensor");
  }
  std::array<std::int64_t, 4> sizes{};
  for (int d = 0; d < 4; ++d) sizes[d] = t.sym_size(d).guard_int(__FILE__, __LINE__);
  return sizes;
}

at::Tensor empty_bnhd(const std::array<std::int64_t, 4>& sizes, const at::Tensor& like) {
  return at::empty({sizes[0], sizes[1], sizes[2], sizes[3]}, like.options());
}

std::tuple<at::Tensor, at::Tensor> forward_meta(const at::Tensor& q, const at::Tensor& k,
                                                const at::Tensor& v, std::int64_t levels,
                                                std::int64_t pool, std::int64_t topk,
                                                std::optional<double> scale,
                                                c10::string_view selection, c10::string_view scorer,
                                                std::int64_t dilation) {
  return translate_errors([&] {
    const auto sizes = concrete_bnhd("q", q);
    const auto kv_sizes = concrete_bnhd("k", k);
    // k and v: q's B, N and D; their head count (grouped-query attention) is make_plan's to check.
    for (const auto& [name, t] : {std::pair{"k", &k}, std::pair{"v", &v}}) {
      const auto s = concrete_bnhd(name, *t);
      if (s != kv_sizes || s[0] != sizes[0] || s[1] != sizes[1] || s[3] != sizes[3] ||
          t->scalar_type() != q.scalar_type()) {
        throw InvalidArgument(name, std::string(c10::toString(t->scalar_type())) + " tensor",
                              "must be [B, N, Hkv, D] with q's B, N, D and dtype (v: k's shape)");
      }
    }
    const Plan plan = make_plan(make_config(levels, pool, topk, scale, selection, scorer, dilation),
                                sizes[0], sizes[1], sizes[2], sizes[3], kv_sizes[2]);
    const DType dtype = dtype_from("q.dtype", q.scalar_type());
    at::Tensor ctx = at::empty({static_cast<std::int64_t>(context_bytes(plan, dtype))},
                               q.options().dtype(at::kByte));
    return std::make_tuple(empty_bnhd(sizes, q), ctx);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_meta(
    const at::Tensor& dout, const at::Tensor& /*ctx*/, std::int64_t levels, std::int64_t pool,
    std::int64_t topk, std::optional<double> scale, c10::string_view selection,
    c10::string_view scorer, std::int64_t dilation, std::int64_t kv_heads) {
  return translate_errors([&] {
    const auto sizes = concrete_bnhd("dout", dout);
    const Plan plan = make_plan(make_config(levels, pool, topk, scale, selection, scorer, dilation),
                                sizes[0], sizes[1], sizes[2], sizes[3], kv_heads);
    auto kv_sizes = sizes;
    kv_sizes[2] = plan.kv_heads;
    return std::make_tuple(empty_bnhd(sizes, dout), empty_bnhd(kv_sizes, dout),
                           empty_bnhd(kv_sizes, dout));
  });
}

}  // namespace

}  // namespace lighthouse::torch_op

TORCH_LIBRARY_IMPL(lighthouse, Meta, m) {
  m.impl("attention_forward", &lighthouse::torch_op::forward_meta);
  m.impl("attention_backward", &lighthouse::torch_op::backward_meta);
}
