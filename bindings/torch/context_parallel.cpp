// The rank-local stages of context parallelism as operators (lighthouse/context_parallel.hpp,
// namespace cp), for the Python orchestration of lighthouse_attention(..., cp_group=group),
// which runs the collectives through torch.distributed between them
// (python/lighthouse_attention/context_parallel.py):
//
//   cp_plan(batch, seq, heads, head_dim, levels, pool, topk, scale, selection, world) -> int[]
//       [S, chunk_rows, edge_tokens, edge_levels, heads_per_rank, selection_bytes]
//   cp_select_gather(q, k, v, levels, pool, topk, scale, selection, world)
//       -> (q_sel, k_sel, v_sel, selection)        rows [2, B, H, S/2W, D]; selection uint8
//   cp_output_edges(o_sel, selection, seq, ...)   -> edges [2, B, H, L-1, D]
//   cp_scatter(o_sel, selection, all_edges, seq, ..., world, rank) -> out [B, seq, H, D]
//   cp_scatter_backward(dout, selection, all_edges, ..., world, rank) -> do_sel [2, B, H, S/2W, D]
//   cp_gather_backward(dq_sel, dk_sel, dv_sel, selection, seq, ..., world) -> (dq, dk, dv)
//
// `seq` is the rank's length (two chunks: N / W), q, k, v, out and dout its shards; all_edges are
// the all-gathered [W, 2, ...] edges (empty when there are none: levels == 1). Meta kernels give
// the shapes, so that torch.compile can record the ops.
#include <ATen/ops/empty.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "convert.hpp"
#include "lighthouse/context_parallel.hpp"

namespace lighthouse::torch_op {

namespace {

ShardPlan shard_plan_of(std::int64_t batch, std::int64_t seq, std::int64_t heads,
                        std::int64_t head_dim, std::int64_t levels, std::int64_t pool,
                        std::int64_t topk, std::optional<double> scale, c10::string_view selection,
                        std::int64_t world) {
  if (world < 1 || world > (1 << 20)) {
    throw InvalidArgument("world", std::to_string(world), "must be >= 1 (the cp_group's size)");
  }
  if (seq % 2 != 0) {
    throw InvalidArgument("seq", std::to_string(seq),
                          "a rank's shard holds two chunks of equal length: must be even");
  }
  // The norm scorer: context parallelism rejects the dilated one (make_shard_plan).
  return make_shard_plan(make_config(levels, pool, topk, scale, selection, "norm", 4), batch,
                         seq * world, heads, head_dim, static_cast<int>(world));
}

// The [2, B, H, S/2W, D] shape of a rank's gathered rows.
std::vector<std::int64_t> rows_shape(const ShardPlan& sp) {
  return {2, sp.plan.batch, sp.plan.heads, sp.chunk_rows, sp.plan.head_dim};
}

void check_rows(const char* name, const at::Tensor& t, const ShardPlan& sp) {
  if (t.sizes() != at::IntArrayRef(rows_shape(sp))) {
    throw InvalidArgument(name, c10::str(t.sizes()),
                          "must be a rank's gathered rows [2, B, H, S/2W, D] = " +
                              c10::str(at::IntArrayRef(rows_shape(sp))));
  }
}

void check_selection(const at::Tensor& sel, const ShardPlan& sp, const at::Tensor& like) {
  if (sel.scalar_type() != at::kByte || sel.dim() != 1 ||
      sel.numel() < static_cast<std::int64_t>(cp::selection_bytes(sp)) ||
      sel.device() != like.device() || !sel.is_contiguous()) {
    throw InvalidArgument("selection", sel.toString() + " of " + std::to_string(sel.numel()),
                          "must be cp_select_gather's uint8 selection (" +
                              std::to_string(cp::selection_bytes(sp)) + " bytes), on " +
                              like.device().str());
  }
}

// The all-gathered edges: `per_rank` elements from every rank, or nothing when there are none.
const void* edges_of(const char* name, const at::Tensor& all, std::int64_t per_rank,
                     const ShardPlan& sp, const at::Tensor& like) {
  const std::int64_t expected = per_rank * sp.world;
  if (all.numel() != expected || (expected > 0 && (all.scalar_type() != like.scalar_type() ||
                                                   all.device() != like.device()))) {
    throw InvalidArgument(name, c10::str(all.sizes()),
                          "must hold every rank's edges: " + std::to_string(expected) + " " +
                              c10::toString(like.scalar_type()) + " elements on " +
                              like.device().str());
  }
  return expected > 0 ? all.data_ptr() : nullptr;
}

at::Tensor empty_rows(const ShardPlan& sp, const at::Tensor& like) {
  return at::empty(rows_shape(sp), like.options().memory_format(at::MemoryFormat::Contiguous));
}

at::Tensor empty_local(const ShardPlan& sp, const at::Tensor& like) {
  return at::empty({sp.plan.batch, sp.local_seq, sp.plan.heads, sp.plan.head_dim},
                   like.options().memory_format(at::MemoryFormat::Contiguous));
}

std::vector<std::int64_t> cp_plan_op(std::int64_t batch, std::int64_t seq, std::int64_t heads,
                                     std::int64_t head_dim, std::int64_t levels, std::int64_t pool,
                                     std::int64_t topk, std::optional<double> scale,
                                     c10::string_view selection, std::int64_t world) {
  return translate_errors([&] {
    const ShardPlan sp =
        shard_plan_of(batch, seq, heads, head_dim, levels, pool, topk, scale, selection, world);
    return std::vector<std::int64_t>{
        sp.plan.S,      sp.chunk_rows,     sp.edge_tokens,
        sp.edge_levels, sp.heads_per_rank, static_cast<std::int64_t>(cp::selection_bytes(sp))};
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> select_gather_kernel(
    const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in, std::int64_t levels,
    std::int64_t pool, std::int64_t topk, std::optional<double> scale, c10::string_view selection,
    std::int64_t world) {
  return translate_errors([&] {
    const c10::OptionalDeviceGuard guard(q_in.device());
    const at::Tensor q = readable(q_in), k = readable(k_in), v = readable(v_in);
    const TensorView qv = view_of("q", q), kv = view_of("k", k), vv = view_of("v", v);
    const ShardPlan sp = shard_plan_of(qv.shape[0], qv.shape[1], qv.shape[2], qv.shape[3], levels,
                                       pool, topk, scale, selection, world);
    at::Tensor qs = empty_rows(sp, q), ks = empty_rows(sp, q), vs = empty_rows(sp, q);
    at::Tensor sel = at::empty({static_cast<std::int64_t>(cp::selection_bytes(sp))},
                               q.options().dtype(at::kByte));
    cp::select_and_gather(sp, qv, kv, vv, sel.data_ptr(), qs.data_ptr(), ks.data_ptr(),
                          vs.data_ptr(), options_for(q));
    return std::make_tuple(qs, ks, vs, sel);
  });
}

at::Tensor output_edges_kernel(const at::Tensor& o_in, const at::Tensor& sel, std::int64_t seq,
                               std::int64_t levels, std::int64_t pool, std::int64_t topk,
                               c10::string_view selection, std::int64_t world) {
  return translate_errors([&] {
    const c10::OptionalDeviceGuard guard(o_in.device());
    const at::Tensor o = o_in.contiguous();
    if (o.dim() != 5) throw InvalidArgument("o_sel", c10::str(o.sizes()), "must be rank 5");
    const ShardPlan sp = shard_plan_of(o.size(1), seq, o.size(2), o.size(4), levels, pool, topk,
                                       std::nullopt, selection, world);
    check_rows("o_sel", o, sp);
    check_selection(sel, sp, o);
    at::Tensor edges =
        at::empty({2, sp.plan.batch, sp.plan.heads, sp.edge_levels, sp.plan.head_dim}, o.options());
    cp::output_edges(sp, o.is_cuda() ? Device::kCUDA : Device::kCPU,
                     dtype_from("o_sel.dtype", o.scalar_type()), sel.data_ptr(), o.data_ptr(),
                     edges.data_ptr(), options_for(o));
    return edges;
  });
}

at::Tensor scatter_kernel(const at::Tensor& o_in, const at::Tensor& sel,
                          const at::Tensor& all_edges_in, std::int64_t seq, std::int64_t levels,
                          std::int64_t pool, std::int64_t topk, c10::string_view selection,
                          std::int64_t world, std::int64_t rank) {
  return translate_errors([&] {
    const c10::OptionalDeviceGuard guard(o_in.device());
    const at::Tensor o = o_in.contiguous(), all_edges = all_edges_in.contiguous();
    if (o.dim() != 5) throw InvalidArgument("o_sel", c10::str(o.sizes()), "must be rank 5");
    const ShardPlan sp = shard_plan_of(o.size(1), seq, o.size(2), o.size(4), levels, pool, topk,
                                       std::nullopt, selection, world);
    check_rows("o_sel", o, sp);
    check_selection(sel, sp, o);
    const std::int64_t per_rank =
        2 * sp.plan.batch * sp.plan.heads * sp.edge_levels * sp.plan.head_dim;
    const void* edges = edges_of("all_edges", all_edges, per_rank, sp, o);
    at::Tensor out = empty_local(sp, o);
    cp::scatter(sp, static_cast<int>(rank), sel.data_ptr(), o.data_ptr(), edges,
                view_of("out", out), options_for(o));
    return out;
  });
}

at::Tensor scatter_backward_kernel(const at::Tensor& dout_in, const at::Tensor& sel,
                                   const at::Tensor& all_edges_in, std::int64_t levels,
                                   std::int64_t pool, std::int64_t topk, c10::string_view selection,
                                   std::int64_t world, std::int64_t rank) {
  return translate_errors([&] {
    const c10::OptionalDeviceGuard guard(dout_in.device());
    const at::Tensor dout = readable(dout_in), all_edges = all_edges_in.contiguous();
    const TensorView dv = view_of("dout", dout);
    const ShardPlan sp = shard_plan_of(dv.shape[0], dv.shape[1], dv.shape[2], dv.shape[3], levels,
                                       pool, topk, std::nullopt, selection, world);
    check_selection(sel, sp, dout);
    const std::int64_t per_rank =
        2 * sp.plan.batch * sp.edge_tokens * sp.plan.heads * sp.plan.head_dim;
    const void* edges = edges_of("all_edges", all_edges, per_rank, sp, dout);
    at::Tensor do_sel = empty_rows(sp, dout);
    cp::scatter_backward(sp, static_cast<int>(rank), sel.data_ptr(), dv, edges, do_sel.data_ptr(),
                         options_for(dout));
    return do_sel;
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gather_backward_kernel(
    const at::Tensor& dq_in, const at::Tensor& dk_in, const at::Tensor& dv_in,
    const at::Tensor& sel, std::int64_t seq, std::int64_t levels, std::int64_t pool,
    std::int64_t topk, c10::string_view selection, std::int64_t world) {
  return translate_errors([&] {
    const c10::OptionalDeviceGuard guard(dq_in.device());
    const at::Tensor gq = dq_in.contiguous(), gk = dk_in.contiguous(), gv = dv_in.contiguous();
    if (gq.dim() != 5) throw InvalidArgument("dq_sel", c10::str(gq.sizes()), "must be rank 5");
    const ShardPlan sp = shard_plan_of(gq.size(1), seq, gq.size(2), gq.size(4), levels, pool, topk,
                                       std::nullopt, selection, world);
    check_rows("dq_sel", gq, sp);
    check_rows("dk_sel", gk, sp);
    check_rows("dv_sel", gv, sp);
    check_selection(sel, sp, gq);
    at::Tensor dq = empty_local(sp, gq), dk = empty_local(sp, gq), dv = empty_local(sp, gq);
    cp::gather_backward(sp, sel.data_ptr(), gq.data_ptr(), gk.data_ptr(), gv.data_ptr(),
                        view_of("dq", dq), view_of("dk", dk), view_of("dv", dv), options_for(gq));
    return std::make_tuple(dq, dk, dv);
  });
}

// ---- meta kernels: shapes only ------------------------------------------------------------------

std::int64_t concrete(const at::Tensor& t, int d) {
  return t.sym_size(d).guard_int(__FILE__, __LINE__);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> select_gather_meta(
    const at::Tensor& q, const at::Tensor&, const at::Tensor&, std::int64_t levels,
    std::int64_t pool, std::int64_t topk, std::optional<double> scale, c10::string_view selection,
    std::int64_t world) {
  return translate_errors([&] {
    const ShardPlan sp = shard_plan_of(concrete(q, 0), concrete(q, 1), concrete(q, 2),
                                       concrete(q, 3), levels, pool, topk, scale, selection, world);
    return std::make_tuple(empty_rows(sp, q), empty_rows(sp, q), empty_rows(sp, q),
                           at::empty({static_cast<std::int64_t>(cp::selection_bytes(sp))},
                                     q.options().dtype(at::kByte)));
  });
}

at::Tensor output_edges_meta(const at::Tensor& o, const at::Tensor&, std::int64_t seq,
                             std::int64_t levels, std::int64_t pool, std::int64_t topk,
                             c10::string_view selection, std::int64_t world) {
  return translate_errors([&] {
    const ShardPlan sp = shard_plan_of(concrete(o, 1), seq, concrete(o, 2), concrete(o, 4), levels,
                                       pool, topk, std::nullopt, selection, world);
    return at::empty({2, sp.plan.batch, sp.plan.heads, sp.edge_levels, sp.plan.head_dim},
                     o.options());
  });
}

at::Tensor scatter_meta(const at::Tensor& o, const at::Tensor&, const at::Tensor&, std::int64_t seq,
                        std::int64_t levels, std::int64_t pool, std::int64_t topk,
                        c10::string_view selection, std::int64_t world, std::int64_t) {
  return translate_errors([&] {
    const ShardPlan sp = shard_plan_of(concrete(o, 1), seq, concrete(o, 2), concrete(o, 4), levels,
                                       pool, topk, std::nullopt, selection, world);
    return empty_local(sp, o);
  });
}

at::Tensor scatter_backward_meta(const at::Tensor& dout, const at::Tensor&, const at::Tensor&,
                                 std::int64_t levels, std::int64_t pool, std::int64_t topk,
                                 c10::string_view selection, std::int64_t world, std::int64_t) {
  return translate_errors([&] {
    const ShardPlan sp =
        shard_plan_of(concrete(dout, 0), concrete(dout, 1), concrete(dout, 2), concrete(dout, 3),
                      levels, pool, topk, std::nullopt, selection, world);
    return empty_rows(sp, dout);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gather_backward_meta(
    const at::Tensor& dq, const at::Tensor&, const at::Tensor&, const at::Tensor&, std::int64_t seq,
    std::int64_t levels, std::int64_t pool, std::int64_t topk, c10::string_view selection,
    std::int64_t world) {
  return translate_errors([&] {
    const ShardPlan sp = shard_plan_of(concrete(dq, 1), seq, concrete(dq, 2), concrete(dq, 4),
                                       levels, pool, topk, std::nullopt, selection, world);
    return std::make_tuple(empty_local(sp, dq), empty_local(sp, dq), empty_local(sp, dq));
  });
}

template <typename M>
void register_kernels(M& m) {
  m.impl("cp_select_gather", &select_gather_kernel);
  m.impl("cp_output_edges", &output_edges_kernel);
  m.impl("cp_scatter", &scatter_kernel);
  m.impl("cp_scatter_backward", &scatter_backward_kernel);
  m.impl("cp_gather_backward", &gather_backward_kernel);
}

}  // namespace

}  // namespace lighthouse::torch_op

TORCH_LIBRARY_FRAGMENT(lighthouse, m) {
  const std::vector<at::Tag> compliant{at::Tag::pt2_compliant_tag};
  m.def(
      "cp_plan(int batch, int seq, int heads, int head_dim, int levels, int pool, int topk, "
      "float? scale, str selection, int world) -> int[]",
      &lighthouse::torch_op::cp_plan_op);
  m.def(
      "cp_select_gather(Tensor q, Tensor k, Tensor v, int levels, int pool, int topk, "
      "float? scale, str selection, int world) -> (Tensor q_sel, Tensor k_sel, Tensor v_sel, "
      "Tensor selection)",
      compliant);
  m.def(
      "cp_output_edges(Tensor o_sel, Tensor selection, int seq, int levels, int pool, int topk, "
      "str mode, int world) -> Tensor",
      compliant);
  m.def(
      "cp_scatter(Tensor o_sel, Tensor selection, Tensor all_edges, int seq, int levels, "
      "int pool, int topk, str mode, int world, int rank) -> Tensor",
      compliant);
  m.def(
      "cp_scatter_backward(Tensor dout, Tensor selection, Tensor all_edges, int levels, int pool, "
      "int topk, str mode, int world, int rank) -> Tensor",
      compliant);
  m.def(
      "cp_gather_backward(Tensor dq_sel, Tensor dk_sel, Tensor dv_sel, Tensor selection, int seq, "
      "int levels, int pool, int topk, str mode, int world) -> (Tensor dq, Tensor dk, Tensor dv)",
      compliant);
}

TORCH_LIBRARY_IMPL(lighthouse, CPU, m) {
  lighthouse::torch_op::register_kernels(m);
}

#ifdef LIGHTHOUSE_WITH_CUDA
TORCH_LIBRARY_IMPL(lighthouse, CUDA, m) {
  lighthouse::torch_op::register_kernels(m);
}
#endif

TORCH_LIBRARY_IMPL(lighthouse, Meta, m) {
  m.impl("cp_select_gather", &lighthouse::torch_op::select_gather_meta);
  m.impl("cp_output_edges", &lighthouse::torch_op::output_edges_meta);
  m.impl("cp_scatter", &lighthouse::torch_op::scatter_meta);
  m.impl("cp_scatter_backward", &lighthouse::torch_op::scatter_backward_meta);
  m.impl("cp_gather_backward", &lighthouse::torch_op::gather_backward_meta);
}
