// Context parallelism (CP): one sequence over W ranks, with the same result as one device.
//
// Sharding. The sequence of N tokens is cut into 2W chunks of N / 2W tokens; rank r holds
// chunks r and 2W - 1 - r (head-tail load balancing: every rank gets one early and one late
// chunk, so the causal attention's work is even), concatenated in that order as its local
// [B, N / W, H, D] tensors. shard() and unshard() move whole tensors to and from that layout.
//
// The algorithm (docs/DESIGN.md, "Context parallelism"). Every chunk holds whole coarsest tiles
// (topk / 128 divisible by 2W), so each rank runs the pyramid, the selection and the gather on
// its two chunks alone, and its gathered rows are exactly the single-device rows of those tiles
// (a tile's entries lie in its own token range). An all-to-all turns the gathered q, k, v from
// sequence-sharded (two chunks, all H heads) into head-sharded (all S rows in causal order,
// H / W heads); each rank runs the dense causal attention for its heads; a second all-to-all
// brings the outputs back. The scatter of a chunk also needs the outputs of the previous chunk's
// last entry at each level (an entry's output lands from its block's last token on, so the last
// blocks reach c_{L-1} - 1 tokens into the next chunk): an all-gather of those few rows. The
// backward mirrors it (an all-gather of the first c_{L-1} - 1 dout tokens of every chunk, then
// two all-to-alls). Levels == 1 (dense) is the same path: Ulysses-style all-to-all of the tokens.
//
// Through the main API: forward()/backward() with Options::comm set (attention.hpp); q, k, v,
// out and the gradients are then this rank's [B, N / W, H, D] shards. On the CPU the result is
// the single-device result bit for bit (the attention computes each head on its own); on CUDA
// to the attention kernel's rounding. The rank-local stages below are for frameworks that run
// the collectives themselves (the PyTorch op's cp_group).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "lighthouse/attention.hpp"
#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse {

// Global index of chunk `which` (0 or 1) of `rank`: rank for the first, 2W - 1 - rank for the
// second.
inline std::int64_t cp_chunk(int world, int rank, int which) {
  return which == 0 ? rank : 2 * static_cast<std::int64_t>(world) - 1 - rank;
}

// Bytes one rank sends to the others in one call, by collective (context_parallel.cpp counts
// the same bytes as it sends them: Communicator::stats()).
struct CpTraffic {
  std::int64_t all_to_all = 0;  // the gathered rows (this design) or the tokens (Ulysses)
  std::int64_t edges = 0;       // the all-gathers of chunk edges (outputs, dout)
  std::int64_t check = 0;       // the agreement check at the start of the call
  std::int64_t total() const { return all_to_all + edges + check; }
};

// Everything that follows from (config, B, N, H, D, W) for a context-parallel call.
struct ShardPlan {
  Plan plan;   // the whole sequence (N tokens)
  Plan chunk;  // one chunk as a sequence of its own (N / 2W tokens, topk / 2W): its selection,
               // shifted, is the whole plan's for the chunk's tiles
  int world = 1;
  std::int64_t local_seq = 0;       // N / W: tokens per rank (two chunks)
  std::int64_t chunk_seq = 0;       // N / 2W
  std::int64_t chunk_rows = 0;      // S / 2W: gathered rows per chunk, batch and head
  std::int64_t heads_per_rank = 0;  // H / W: heads of the attention on each rank
  std::int64_t edge_tokens = 0;     // c_{L-1} - 1: tokens of a chunk reached by the previous one
  std::int64_t edge_levels = 0;     // L - 1: rows per chunk, batch and head in output_edges()

  // Per rank and call, this design and Ulysses (the all-to-all of q, k, v, out over the tokens
  // instead of the gathered rows, as every stock CP for dense attention does).
  CpTraffic forward_traffic(DType dtype) const;
  CpTraffic backward_traffic(DType dtype) const;
  CpTraffic ulysses_forward_traffic(DType dtype) const;
  CpTraffic ulysses_backward_traffic(DType dtype) const;
};

// Checks the rules of context parallelism on top of make_plan(config, B, N, H, D) (N: the whole
// sequence), each violation an InvalidArgument: world >= 1 (`cp`); N divisible by 2W (`seq`);
// levels >= 2: topk / 128 divisible by 2W, so that every chunk holds whole tiles (`cp`); H
// divisible by W (`cp`; the all-gather fallback for other head counts is not implemented);
// selection = original (`selection`: the causal rule reads the block before a chunk's first,
// not implemented yet).
ShardPlan make_shard_plan(const Config& config, std::int64_t batch, std::int64_t seq,
                          std::int64_t heads, std::int64_t head_dim, int world);

// The rank's two chunks of a whole [B, N, H, D] host tensor into `local` ([B, N / W, H, D]), and
// back. Any strides (D contiguous); float32 or float64 host tensors; InvalidArgument on a shape
// that does not fit.
void shard(const TensorView& whole, int world, int rank, const TensorView& local);
void unshard(const TensorView& local, int world, int rank, const TensorView& whole);

// A rank's Context::indices() ([B, H, 2, S / 2W]: its two chunks' rows) into its rows of the
// whole sequence's [B, H, S] indices (`whole`, plan.plan.batch * heads * S entries).
void unshard_indices(const ShardPlan& plan, int rank, const std::vector<std::int32_t>& local,
                     std::int32_t* whole);

// The agreement check's message size (Communicator::all_gather_host at the start of every call).
inline constexpr std::size_t kCpCheckBytes = 128;

// ---- The rank-local stages, for frameworks that run the collectives themselves --------------
// Buffers are on the tensors' device, contiguous, in the dtype of the tensors; `selection` is
// kContextAlignment-aligned. With Options::stream on CUDA, all work is queued on that stream.
//   selection  selection_bytes(plan): both chunks' indices and position maps
//   rows       [2, B, H, S / 2W, D]: a tensor's gathered rows, chunk by chunk (the rank's two
//              chunks in causal order within each)
//   edges      [2, B, H, L - 1, D]: the output rows of each chunk's last entry at levels 2..L
//              (zero where not selected); an all-gather makes [W, 2, B, H, L - 1, D]
//   dout edges [2, B, c_{L-1} - 1, H, D]: each chunk's first dout tokens; all-gathered likewise
namespace cp {

std::size_t selection_bytes(const ShardPlan& plan);

// Pyramid, selection and gather of the rank's chunks of q, k, v ([B, N / W, H, D] views).
void select_and_gather(const ShardPlan& plan, const TensorView& q, const TensorView& k,
                       const TensorView& v, void* selection, void* q_sel, void* k_sel, void* v_sel,
                       const Options& options = {});

// The edge rows of the attention outputs `o_sel` (rows) of both chunks.
void output_edges(const ShardPlan& plan, Device device, DType dtype, const void* selection,
                  const void* o_sel, void* edges, const Options& options = {});

// out ([B, N / W, H, D]) from the outputs `o_sel` (rows) and every rank's edges (all_edges).
void scatter(const ShardPlan& plan, int rank, const void* selection, const void* o_sel,
             const void* all_edges, const TensorView& out, const Options& options = {});

// dout's edge tokens (dout edges) of both chunks.
void dout_edges(const ShardPlan& plan, const TensorView& dout, void* edges,
                const Options& options = {});

// do_sel (rows) from dout ([B, N / W, H, D]) and every rank's dout edges.
void scatter_backward(const ShardPlan& plan, int rank, const void* selection,
                      const TensorView& dout, const void* all_edges, void* do_sel,
                      const Options& options = {});

// dq, dk, dv ([B, N / W, H, D]) from the gathered gradients (rows).
void gather_backward(const ShardPlan& plan, const void* selection, const void* dq_sel,
                     const void* dk_sel, const void* dv_sel, const TensorView& dq,
                     const TensorView& dk, const TensorView& dv, const Options& options = {});

// The rank's selected pyramid indices of the whole sequence, [B, H, 2, S / 2W] int32 (chunk by
// chunk), copied to the host: the single-device Context::indices() rows of those chunks.
std::vector<std::int32_t> selected_indices(const ShardPlan& plan, int rank, Device device,
                                           const void* selection);

}  // namespace cp

}  // namespace lighthouse
