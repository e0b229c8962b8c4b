// The `lighthouse` operator library: schemas, and the ops that need no tensor (configuration
// checks and plans for Python). Kernels: kernels.cpp (CPU, CUDA), autograd.cpp, meta.cpp.
//
//   attention(q, k, v, levels, pool, topk, scale, selection, scorer, dilation) -> out
//                                                                      (differentiable)
//   attention_forward(...) -> (out, ctx)                       ctx: the uint8 context buffer
//   attention_backward(dout, ctx, levels, ...) -> (dq, dk, dv)
//   library_forward_backward(q, k, v, dout, ...)               the library's own Context path
//                                                              (tests, benchmark)
// q, out, dq are [B, N, H, D]; k, v, dk, dv [B, N, Hkv, D] (grouped-query attention when Hkv < H;
// attention_backward takes Hkv as kv_heads, 0 meaning H); levels/pool/topk/scale/selection/scorer/
// dilation are lighthouse::Config ("original", "causal" or "stride": Config::selection; "norm" or
// "dilated": Config::scorer).
#include <torch/library.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "convert.hpp"

namespace lighthouse::torch_op {

namespace {

void validate_op(std::int64_t levels, std::int64_t pool, std::int64_t topk,
                 std::optional<double> scale, c10::string_view selection, c10::string_view scorer,
                 std::int64_t dilation) {
  translate_errors([&] { make_config(levels, pool, topk, scale, selection, scorer, dilation); });
}

// [S, pyramid_size, tiles, context_bytes, indices_offset]: what a configuration costs at these
// sizes (kv_heads: the heads of k and v, 0 meaning `heads`), and where the selected indices lie in
// its context (context_indices_offset).
std::vector<std::int64_t> plan_op(std::int64_t batch, std::int64_t seq, std::int64_t heads,
                                  std::int64_t head_dim, std::int64_t levels, std::int64_t pool,
                                  std::int64_t topk, std::optional<double> scale,
                                  c10::ScalarType dtype, c10::string_view selection,
                                  c10::string_view scorer, std::int64_t dilation,
                                  std::int64_t kv_heads) {
  return translate_errors([&] {
    const Plan plan = make_plan(make_config(levels, pool, topk, scale, selection, scorer, dilation),
                                batch, seq, heads, head_dim, kv_heads);
    const DType ctx_dtype = dtype_from("dtype", dtype);
    return std::vector<std::int64_t>{
        plan.S, plan.pyramid_size, plan.tiles,
        static_cast<std::int64_t>(context_bytes(plan, ctx_dtype)),
        static_cast<std::int64_t>(context_indices_offset(plan, ctx_dtype))};
  });
}

}  // namespace

}  // namespace lighthouse::torch_op

TORCH_LIBRARY(lighthouse, m) {
  const std::vector<at::Tag> compliant{at::Tag::pt2_compliant_tag};
  m.def(
      "attention(Tensor q, Tensor k, Tensor v, int levels=3, int pool=2, int topk=1536, "
      "float? scale=None, str selection=\"original\", str scorer=\"norm\", int dilation=4) -> "
      "Tensor",
      compliant);
  m.def(
      "attention_forward(Tensor q, Tensor k, Tensor v, int levels, int pool, int topk, "
      "float? scale=None, str selection=\"original\", str scorer=\"norm\", int dilation=4) -> "
      "(Tensor out, Tensor ctx)",
      compliant);
  m.def(
      "attention_backward(Tensor dout, Tensor ctx, int levels, int pool, int topk, "
      "float? scale=None, str selection=\"original\", str scorer=\"norm\", int dilation=4, "
      "int kv_heads=0) -> (Tensor dq, Tensor dk, Tensor dv)",
      compliant);
  m.def(
      "library_forward_backward(Tensor q, Tensor k, Tensor v, Tensor dout, int levels, int pool, "
      "int topk, float? scale=None, str selection=\"original\", str scorer=\"norm\", int "
      "dilation=4) -> (Tensor out, Tensor dq, "
      "Tensor dk, Tensor dv)");
  m.def(
      "validate(int levels, int pool, int topk, float? scale=None, "
      "str selection=\"original\", str scorer=\"norm\", int dilation=4) -> ()",
      &lighthouse::torch_op::validate_op);
  m.def(
      "plan(int batch, int seq, int heads, int head_dim, int levels, int pool, int topk, "
      "float? scale=None, ScalarType dtype=float, str selection=\"original\", str scorer=\"norm\", "
      "int dilation=4, int kv_heads=0) -> int[]",
      &lighthouse::torch_op::plan_op);
}
