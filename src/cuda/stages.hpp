// Launchers of the CUDA stage kernels (pyramid, selection, gather, scatter and their backward),
// shared by backend.cpp and the .cu files that define them. Host-only declarations: this header
// is included from plain C++.
//
// Buffers the stages pass to each other (all per (batch, head) = bh, row-major; BH counts the
// query heads, BHkv the KV heads, equal without grouped-query attention):
// clang-format off
//   scores    float [BHkv, P - N] pooled max-norm scores of levels 2..L (level l at offset_l - N);
//                                 a query score is the max over its group's heads
//   first     float [BHkv, N / p] causal selection only: the norm of token m p, the first token of
//                                 every level-2 block (and so of every block above)
//   coarse    T     [BH, n_L, D]  the coarsest level's means (only when L >= 2; k, v: BHkv)
//   indices   int32 [BHkv, S]     selected pyramid indices in causal order
//   position  int32 [BHkv, P]     pyramid index -> row s in [0, S) of the gathered rows, or -1
//   *_sel     T     [BH, S, D]    gathered rows, the layout the dense attention reads (k, v: BHkv)
// clang-format on
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::cuda {

inline constexpr int kMaxLevels = 32;

// What the kernels need of a Plan, by value (kernel parameter). `heads` are those of the tensors a
// launch walks; the selection of head h of batch b is row (b * heads + h) / group of `indices` and
// `position`. make_geometry() describes the query heads (group = H / Hkv: grouped-query
// attention shares one selection per group), kv_geometry() the KV heads (group 1).
struct Geometry {
  std::int64_t batch = 0, seq = 0, heads = 0, head_dim = 0;
  std::int64_t group = 1;
  int levels = 0, pool = 0, log2_pool = 0;
  std::int64_t pyramid_size = 0, tiles = 0, tile_entries = 0, S = 0;
  bool causal = false;                   // Selection::kCausal
  bool stride = false;                   // Selection::kStride (reads no scores)
  std::int64_t offset[kMaxLevels] = {};  // pyramid offset of level l (0-based)
  std::int64_t size[kMaxLevels] = {};    // entries of level l; block size is 1 << (l * log2_pool)
};

// Throws InvalidArgument when the plan exceeds what the kernels are written for.
Geometry make_geometry(const Plan& plan);
// The same plan seen from the KV heads: heads = H / group, group = 1 (the selection's rows).
Geometry kv_geometry(const Geometry& g);

// A [B, N, H, D] tensor with unit D stride: base pointer and element strides of B, N, H.
struct TokenTensor {
  void* data = nullptr;
  std::int64_t sb = 0, sn = 0, sh = 0;
};
inline TokenTensor token_tensor(const TensorView& t) {
  return {t.data, t.strides[0], t.strides[1], t.strides[2]};
}

// Counts NaN/Inf elements of a [B, N, H, D] view into *count (which must start at 0).
void launch_count_nonfinite(DType dtype, const TokenTensor& x, std::int64_t batch, std::int64_t seq,
                            std::int64_t heads, std::int64_t head_dim, unsigned* count,
                            cudaStream_t stream);

// Pyramid: per-token norms (float64 sums in d order), max-pooled to levels 2..L, and the
// coarsest level's means of q, k and v. Reads q, k and v once. With g.causal it also writes the
// norms of the blocks' first tokens to first_q, first_k. Without grouped-query attention
// (g.group == 1) one pass over q, k and v; with it, a pass over q (scores per query head, into
// pool memory, then the max over each group), one over k and v.
void launch_pyramid(const Geometry& g, DType dtype, const TokenTensor& q, const TokenTensor& k,
                    const TokenTensor& v, float* score_q, float* score_k, float* first_q,
                    float* first_k, void* coarse_q, void* coarse_k, void* coarse_v,
                    cudaStream_t stream);

// The pyramid pass over `count` (1..3) tensors of g.heads heads: scores of x[0] and x[1] into
// score[0], score[1] and first[0], first[1] where those are not null, coarse means of each x[i]
// into coarse[i].
void launch_pyramid_pass(const Geometry& g, DType dtype, int count, const TokenTensor* x,
                         float* const score[2], float* const first[2], void* const* coarse,
                         cudaStream_t stream);

// out[r, j] = max over i < group of in[r * group + i, j], for r < rows and j < count.
void launch_group_max(const float* in, float* out, std::int64_t rows, std::int64_t group,
                      std::int64_t count, cudaStream_t stream);

// The token scores (core/scores.hpp) of every row of a [B, N, H, D] view x into scores [BH, N]:
// one thread per row, the chunked sum tree literally (the CPU's order, so the same bits for the
// same row). The dilated scorer's level 0 (pyramid_dilated.cpp).
void launch_token_scores(const Geometry& g, DType dtype, const TokenTensor& x, float* scores,
                         cudaStream_t stream);

// Levels 2..L of the scores [BH, P - N] max-pooled from token scores [BH, N] (q and k), and with
// g.causal the first-token scores [BH, N / p]: what launch_pyramid writes for the norm scorer.
void launch_pool_scores(const Geometry& g, const float* token_q, const float* token_k,
                        float* score_q, float* score_k, float* first_q, float* first_k,
                        cudaStream_t stream);

// dst <- src, two [batch, seq, heads, head_dim] views of `dtype` (16-byte aligned rows).
void launch_copy_tokens(DType dtype, const TokenTensor& src, const TokenTensor& dst,
                        std::int64_t batch, std::int64_t seq, std::int64_t heads,
                        std::int64_t head_dim, cudaStream_t stream);

// Selection, in causal order: writes indices and every entry of position (-1: not selected).
// first_q, first_k are read with g.causal only.
void launch_selection(const Geometry& g, const float* score_q, const float* score_k,
                      const float* first_q, const float* first_k, std::int32_t* indices,
                      std::int32_t* position, cudaStream_t stream);

// Gather: the q, k, v rows (means of each entry's tokens) in causal order. With grouped-query
// attention, q is gathered per query head and k, v once per KV group.
void launch_gather(const Geometry& g, DType dtype, const TokenTensor& q, const TokenTensor& k,
                   const TokenTensor& v, const void* coarse_q, const void* coarse_k,
                   const void* coarse_v, const std::int32_t* indices, void* q_sel, void* k_sel,
                   void* v_sel, cudaStream_t stream);

// Backward of the gather: dq[t] = sum_l dq_sel[position(l, t / c_l)] / c_l (same for k, v).
void launch_gather_backward(const Geometry& g, DType dtype, const std::int32_t* position,
                            const void* dq_sel, const void* dk_sel, const void* dv_sel,
                            const TokenTensor& dq, const TokenTensor& dk, const TokenTensor& dv,
                            cudaStream_t stream);
// The same for one tensor (dx from dx_sel); the bits of the three-tensor launch.
void launch_gather_backward(const Geometry& g, DType dtype, const std::int32_t* position,
                            const void* dx_sel, const TokenTensor& dx, cudaStream_t stream);

// Scatter: out[t] = sum_l o_sel[position(l, (t + 1) / c_l - 1)], 0 where nothing reaches t.
void launch_scatter(const Geometry& g, DType dtype, const std::int32_t* position, const void* o_sel,
                    const TokenTensor& out, cudaStream_t stream);

// Backward of the scatter: do_sel[s] = sum of dout over the tokens entry s was scattered to.
void launch_scatter_backward(const Geometry& g, DType dtype, const std::int32_t* indices,
                             const TokenTensor& dout, void* do_sel, cudaStream_t stream);

// ---- Context parallelism: the edges between chunks (chunk_edges.cu) ----------------------------
// `g` is a chunk's geometry (the chunk as a sequence of its own); rows and edges as
// context_parallel.hpp and backend.hpp describe them.

// edges [BH, L-1, D]: the o_sel rows of the chunk's last entry at levels 1..L-1, zero where not
// selected.
void launch_output_edges(const Geometry& g, DType dtype, const std::int32_t* position,
                         const void* o_sel, void* edges, cudaStream_t stream);
// out's first c_{L-1} - 1 tokens again (after launch_scatter), with the previous chunk's edges
// (prev_edges [BH, L-1, D]) at the levels whose entry lies before the chunk.
void launch_scatter_edges(const Geometry& g, DType dtype, const std::int32_t* position,
                          const void* o_sel, const void* prev_edges, const TokenTensor& out,
                          cudaStream_t stream);
// The do_sel rows of the chunk's last entries again (after launch_scatter_backward), with the
// next chunk's first c_{L-1} - 1 dout tokens (next_dout [B, c_{L-1} - 1, H, D]) after the
// chunk's last.
void launch_scatter_backward_edges(const Geometry& g, DType dtype, const std::int32_t* position,
                                   const TokenTensor& dout, const void* next_dout, void* do_sel,
                                   cudaStream_t stream);
// dst [B, tokens, H, D] (contiguous) = the first `tokens` tokens of x.
void launch_copy_tokens(DType dtype, const TokenTensor& x, std::int64_t batch, std::int64_t tokens,
                        std::int64_t heads, std::int64_t head_dim, void* dst, cudaStream_t stream);

}  // namespace lighthouse::cuda
