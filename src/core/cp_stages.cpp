// The rank-local stages of context parallelism (context_parallel.hpp, namespace cp): each runs
// the backend's stage on the rank's two chunks in turn, with the neighbour chunks' edges picked
// out of the all-gathered buffers. No collective happens here.
#include <cstdint>
#include <string>
#include <vector>

#include "core/backend.hpp"
#include "core/carver.hpp"
#include "core/cp_layout.hpp"
#include "lighthouse/context_parallel.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse {

// The defaults of the context-parallel hooks (backend.hpp): a backend without them refuses.
namespace {
[[noreturn]] void no_cp(Device device) {
  throw Error(std::string("the ") + device_name(device) +
              " backend does not implement context parallelism");
}
}  // namespace

void Backend::chunk_select_gather(const Plan&, const TensorView&, const TensorView&,
                                  const TensorView&, std::int32_t*, std::int32_t*, void*, void*,
                                  void*, const Options&) {
  no_cp(device());
}
void Backend::chunk_output_edges(const Plan&, DType, const std::int32_t*, const void*, void*,
                                 const Options&) {
  no_cp(device());
}
void Backend::chunk_scatter(const Plan&, const std::int32_t*, const void*, const void*,
                            const TensorView&, const Options&) {
  no_cp(device());
}
void Backend::copy_tokens(const TensorView&, std::int64_t, void*, const Options&) {
  no_cp(device());
}
void Backend::chunk_scatter_backward(const Plan&, const std::int32_t*, const std::int32_t*,
                                     const TensorView&, const void*, void*, const Options&) {
  no_cp(device());
}
void Backend::chunk_gather_backward(const Plan&, const std::int32_t*, const void*, const void*,
                                    const void*, const TensorView&, const TensorView&,
                                    const TensorView&, const Options&) {
  no_cp(device());
}
void Backend::rows_attention_forward(const Plan&, DType, const void*, const void*, const void*,
                                     void*, void*, const Options&) {
  no_cp(device());
}
void Backend::rows_attention_backward(const Plan&, DType, const void*, const void*, const void*,
                                      const void*, const void*, const void*, void*, void*, void*,
                                      const Options&) {
  no_cp(device());
}
void Backend::copy_2d(void*, std::size_t, const void*, std::size_t, std::size_t, std::size_t,
                      const Options&) {
  no_cp(device());
}

namespace cp {

SelectionLayout selection_layout(const ShardPlan& plan) {
  const auto BH = static_cast<std::size_t>(plan.chunk.batch * plan.chunk.heads);
  SelectionLayout at;
  Carver carve;
  for (int c = 0; c < 2; ++c) {
    at.indices[c] = carve.take(BH * static_cast<std::size_t>(plan.chunk.S) * sizeof(std::int32_t));
  }
  for (int c = 0; c < 2; ++c) {
    at.position[c] =
        carve.take(BH * static_cast<std::size_t>(plan.chunk.pyramid_size) * sizeof(std::int32_t));
  }
  at.bytes = carve.size();
  return at;
}

std::size_t selection_bytes(const ShardPlan& plan) {
  return selection_layout(plan).bytes;
}

std::size_t chunk_rows_bytes(const ShardPlan& plan, DType dtype) {
  return static_cast<std::size_t>(plan.chunk.batch * plan.chunk.heads * plan.chunk.S *
                                  plan.chunk.head_dim) *
         dtype_size(dtype);
}

std::size_t output_edge_bytes(const ShardPlan& plan, DType dtype) {
  return static_cast<std::size_t>(plan.chunk.batch * plan.chunk.heads * plan.edge_levels *
                                  plan.chunk.head_dim) *
         dtype_size(dtype);
}

std::size_t dout_edge_bytes(const ShardPlan& plan, DType dtype) {
  return static_cast<std::size_t>(plan.chunk.batch * plan.edge_tokens * plan.chunk.heads *
                                  plan.chunk.head_dim) *
         dtype_size(dtype);
}

TensorView chunk_view(const TensorView& local, std::int64_t chunk_seq, int which) {
  TensorView v = local;
  v.shape[1] = chunk_seq;
  v.data = static_cast<char*>(local.data) + which * chunk_seq * local.strides[1] *
                                                static_cast<std::int64_t>(dtype_size(local.dtype));
  return v;
}

namespace {

// A rank's [B, N / W, H, D] view of this plan: shape, unit D stride, a pointer.
void check_local(const char* name, const TensorView& t, const ShardPlan& plan) {
  const std::array<std::int64_t, kMaxRank> expected{plan.plan.batch, plan.local_seq,
                                                    plan.plan.heads, plan.plan.head_dim};
  if (t.rank != 4 || t.shape != expected) {
    throw InvalidArgument(name, t.shape_string(),
                          "must be this rank's shard [B, N / cp, H, D] = [" +
                              std::to_string(expected[0]) + ", " + std::to_string(expected[1]) +
                              ", " + std::to_string(expected[2]) + ", " +
                              std::to_string(expected[3]) + "]");
  }
  if (t.strides[3] != 1) {
    throw InvalidArgument(std::string(name) + ".stride(3)", std::to_string(t.strides[3]),
                          "the head dimension D must be contiguous (stride 1)");
  }
  if (t.data == nullptr) throw InvalidArgument(name, "null", "data pointer must not be null");
}

void check_same(const char* name, const TensorView& t, const TensorView& ref) {
  if (t.dtype != ref.dtype || t.device != ref.device) {
    throw InvalidArgument(name, std::string(dtype_name(t.dtype)) + " on " + device_name(t.device),
                          std::string("must match the call's first tensor: ") +
                              dtype_name(ref.dtype) + " on " + device_name(ref.device));
  }
}

void check_pointer(const char* name, const void* p) {
  if (p == nullptr) throw InvalidArgument(name, "null", "must point to a buffer");
}

const std::int32_t* part(const void* selection, std::size_t offset) {
  return reinterpret_cast<const std::int32_t*>(static_cast<const char*>(selection) + offset);
}
std::int32_t* part(void* selection, std::size_t offset) {
  return reinterpret_cast<std::int32_t*>(static_cast<char*>(selection) + offset);
}
const char* at(const void* p, std::size_t offset) {
  return static_cast<const char*>(p) + offset;
}
char* at(void* p, std::size_t offset) {
  return static_cast<char*>(p) + offset;
}

}  // namespace

void select_and_gather(const ShardPlan& plan, const TensorView& q, const TensorView& k,
                       const TensorView& v, void* selection, void* q_sel, void* k_sel, void* v_sel,
                       const Options& options) {
  check_local("q", q, plan);
  check_local("k", k, plan);
  check_local("v", v, plan);
  check_same("k", k, q);
  check_same("v", v, q);
  for (const auto& [name, p] : {std::pair{"selection", selection}, std::pair{"q_sel", q_sel},
                                std::pair{"k_sel", k_sel}, std::pair{"v_sel", v_sel}}) {
    check_pointer(name, p);
  }
  Backend& backend = backend_for(q.device);
  backend.check_supported(plan.plan, q.dtype);
  const SelectionLayout sel = selection_layout(plan);
  const std::size_t rows = chunk_rows_bytes(plan, q.dtype);
  for (int c = 0; c < 2; ++c) {
    backend.chunk_select_gather(plan.chunk, chunk_view(q, plan.chunk_seq, c),
                                chunk_view(k, plan.chunk_seq, c), chunk_view(v, plan.chunk_seq, c),
                                part(selection, sel.indices[c]), part(selection, sel.position[c]),
                                at(q_sel, c * rows), at(k_sel, c * rows), at(v_sel, c * rows),
                                options);
  }
}

void output_edges(const ShardPlan& plan, Device device, DType dtype, const void* selection,
                  const void* o_sel, void* edges, const Options& options) {
  if (plan.edge_levels == 0) return;
  check_pointer("selection", selection);
  check_pointer("o_sel", o_sel);
  check_pointer("edges", edges);
  Backend& backend = backend_for(device);
  const SelectionLayout sel = selection_layout(plan);
  const std::size_t rows = chunk_rows_bytes(plan, dtype);
  const std::size_t edge = output_edge_bytes(plan, dtype);
  for (int c = 0; c < 2; ++c) {
    backend.chunk_output_edges(plan.chunk, dtype, part(selection, sel.position[c]),
                               at(o_sel, c * rows), at(edges, c * edge), options);
  }
}

void scatter(const ShardPlan& plan, int rank, const void* selection, const void* o_sel,
             const void* all_edges, const TensorView& out, const Options& options) {
  check_local("out", out, plan);
  check_pointer("selection", selection);
  check_pointer("o_sel", o_sel);
  if (plan.edge_levels > 0) check_pointer("all_edges", all_edges);
  if (rank < 0 || rank >= plan.world) {
    throw InvalidArgument("rank", std::to_string(rank),
                          "must be in [0, cp = " + std::to_string(plan.world) + ")");
  }
  Backend& backend = backend_for(out.device);
  const SelectionLayout sel = selection_layout(plan);
  const std::size_t rows = chunk_rows_bytes(plan, out.dtype);
  const std::size_t edge = output_edge_bytes(plan, out.dtype);
  for (int c = 0; c < 2; ++c) {
    const std::int64_t g = cp_chunk(plan.world, rank, c);
    const void* prev = g > 0 && plan.edge_levels > 0
                           ? at(all_edges, edge_slot(plan.world, g - 1) * edge)
                           : nullptr;
    backend.chunk_scatter(plan.chunk, part(selection, sel.position[c]), at(o_sel, c * rows), prev,
                          chunk_view(out, plan.chunk_seq, c), options);
  }
}

void dout_edges(const ShardPlan& plan, const TensorView& dout, void* edges,
                const Options& options) {
  if (plan.edge_tokens == 0) return;
  check_local("dout", dout, plan);
  check_pointer("edges", edges);
  Backend& backend = backend_for(dout.device);
  const std::size_t edge = dout_edge_bytes(plan, dout.dtype);
  for (int c = 0; c < 2; ++c) {
    backend.copy_tokens(chunk_view(dout, plan.chunk_seq, c), plan.edge_tokens, at(edges, c * edge),
                        options);
  }
}

void scatter_backward(const ShardPlan& plan, int rank, const void* selection,
                      const TensorView& dout, const void* all_edges, void* do_sel,
                      const Options& options) {
  check_local("dout", dout, plan);
  check_pointer("selection", selection);
  check_pointer("do_sel", do_sel);
  if (plan.edge_tokens > 0) check_pointer("all_edges", all_edges);
  if (rank < 0 || rank >= plan.world) {
    throw InvalidArgument("rank", std::to_string(rank),
                          "must be in [0, cp = " + std::to_string(plan.world) + ")");
  }
  Backend& backend = backend_for(dout.device);
  const SelectionLayout sel = selection_layout(plan);
  const std::size_t rows = chunk_rows_bytes(plan, dout.dtype);
  const std::size_t edge = dout_edge_bytes(plan, dout.dtype);
  const std::int64_t last = 2 * static_cast<std::int64_t>(plan.world) - 1;
  for (int c = 0; c < 2; ++c) {
    const std::int64_t g = cp_chunk(plan.world, rank, c);
    const void* next = g < last && plan.edge_tokens > 0
                           ? at(all_edges, edge_slot(plan.world, g + 1) * edge)
                           : nullptr;
    backend.chunk_scatter_backward(
        plan.chunk, part(selection, sel.indices[c]), part(selection, sel.position[c]),
        chunk_view(dout, plan.chunk_seq, c), next, at(do_sel, c * rows), options);
  }
}

void gather_backward(const ShardPlan& plan, const void* selection, const void* dq_sel,
                     const void* dk_sel, const void* dv_sel, const TensorView& dq,
                     const TensorView& dk, const TensorView& dv, const Options& options) {
  check_local("dq", dq, plan);
  check_local("dk", dk, plan);
  check_local("dv", dv, plan);
  check_same("dk", dk, dq);
  check_same("dv", dv, dq);
  for (const auto& [name, p] : {std::pair{"selection", selection}, std::pair{"dq_sel", dq_sel},
                                std::pair{"dk_sel", dk_sel}, std::pair{"dv_sel", dv_sel}}) {
    check_pointer(name, p);
  }
  Backend& backend = backend_for(dq.device);
  const SelectionLayout sel = selection_layout(plan);
  const std::size_t rows = chunk_rows_bytes(plan, dq.dtype);
  for (int c = 0; c < 2; ++c) {
    backend.chunk_gather_backward(
        plan.chunk, part(selection, sel.position[c]), at(dq_sel, c * rows), at(dk_sel, c * rows),
        at(dv_sel, c * rows), chunk_view(dq, plan.chunk_seq, c), chunk_view(dk, plan.chunk_seq, c),
        chunk_view(dv, plan.chunk_seq, c), options);
  }
}

std::vector<std::int32_t> selected_indices(const ShardPlan& plan, int rank, Device device,
                                           const void* selection) {
  check_pointer("selection", selection);
  const SelectionLayout sel = selection_layout(plan);
  const Plan& chunk = plan.chunk;
  const std::int64_t BH = chunk.batch * chunk.heads, S = chunk.S;
  std::vector<std::int32_t> local(static_cast<std::size_t>(BH * S));
  std::vector<std::int32_t> out(static_cast<std::size_t>(BH * 2 * S));
  Backend& backend = backend_for(device);
  const int L = chunk.config.levels;
  for (int c = 0; c < 2; ++c) {
    backend.copy_to_host(local.data(), part(selection, sel.indices[c]),
                         local.size() * sizeof(std::int32_t));
    const std::int64_t g = cp_chunk(plan.world, rank, c);
    for (std::int64_t bh = 0; bh < BH; ++bh) {
      for (std::int64_t s = 0; s < S; ++s) {
        const std::int64_t idx = local[bh * S + s];
        int l = L - 1;
        while (chunk.offset[l] > idx) --l;
        const std::int64_t i = idx - chunk.offset[l];
        out[(bh * 2 + c) * S + s] =
            static_cast<std::int32_t>(plan.plan.offset[l] + g * chunk.size[l] + i);
      }
    }
  }
  return out;
}

}  // namespace cp

}  // namespace lighthouse
