// Launchers of the CUDA stage kernels (pyramid, selection, gather, scatter and their backward),
// shared by backend.cpp and the .cu files that define them. Host-only declarations: this header
// is included from plain C++.
//
// Buffers the stages pass to each other (all per (batch, head) = bh, row-major):
// clang-format off
//   scores    float [BH, P - N]   pooled max-norm scores of levels 2..L (level l at offset_l - N)
//   first     float [BH, N / p]   causal selection only: the norm of token m p, the first token of
//                                 every level-2 block (and so of every block above)
//   coarse    T     [BH, n_L, D]  the coarsest level's means (only when L >= 2)
//   indices   int32 [BH, S]       selected pyramid indices in causal order
//   position  int32 [BH, P]       pyramid index -> row s in [0, S) of the gathered rows, or -1
//   *_sel     T     [BH, S, D]    gathered rows, the layout the dense attention reads
// clang-format on
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::cuda {

inline constexpr int kMaxLevels = 32;

// What the kernels need of a Plan, by value (kernel parameter).
struct Geometry {
  std::int64_t batch = 0, seq = 0, heads = 0, head_dim = 0;
  int levels = 0, pool = 0, log2_pool = 0;
  std::int64_t pyramid_size = 0, tiles = 0, tile_entries = 0, S = 0;
  bool causal = false;                   // Selection::kCausal
  std::int64_t offset[kMaxLevels] = {};  // pyramid offset of level l (0-based)
  std::int64_t size[kMaxLevels] = {};    // entries of level l; block size is 1 << (l * log2_pool)
};

// Throws InvalidArgument when the plan exceeds what the kernels are written for.
Geometry make_geometry(const Plan& plan);

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
// norms of the blocks' first tokens to first_q, first_k.
void launch_pyramid(const Geometry& g, DType dtype, const TokenTensor& q, const TokenTensor& k,
                    const TokenTensor& v, float* score_q, float* score_k, float* first_q,
                    float* first_k, void* coarse_q, void* coarse_k, void* coarse_v,
                    cudaStream_t stream);

// Selection, in causal order: writes indices and every entry of position (-1: not selected).
// first_q, first_k are read with g.causal only.
void launch_selection(const Geometry& g, const float* score_q, const float* score_k,
                      const float* first_q, const float* first_k, std::int32_t* indices,
                      std::int32_t* position, cudaStream_t stream);

// Gather: the q, k, v rows (means of each entry's tokens) in causal order.
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
