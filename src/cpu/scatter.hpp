// The scatter on the CPU: the gathered outputs scattered back to token positions, and its
// backward. An entry of level l, local index i, is added to tokens [i c + c - 1, i c + 2c - 2]
// (c = c_l, clipped to < N): it starts at the block's last token, so no token receives
// information from its future. Each token receives at most one entry per level, and the sum
// runs over levels in a fixed order: the same bits for any thread count.
#pragma once

#include <cstdint>

#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::cpu {

// out[b, t, h] = sum over l = 0..L-1 of o_sel[pos_l((t + 1) / c_l - 1)]; 0 where nothing lands.
// o_sel: [B*H][S][D] of out's dtype; position: [B*H][pyramid_size] (selection.hpp).
void scatter_rows(const Plan& plan, const void* o_sel, const std::int32_t* position,
                  const TensorView& out, int threads);

// do_sel[s] = sum of dout over the tokens row s was scattered to (in token order).
void scatter_rows_backward(const Plan& plan, const TensorView& dout, const std::int32_t* indices,
                           void* do_sel, int threads);

// ---- Context parallelism: the edges between chunks (context_parallel.hpp) -----------------------
// `plan` is a chunk's (the chunk as a sequence of its own). Its last entry at level l >= 1 (index
// n_l - 1) reaches the next chunk's first c_l - 1 tokens; the helpers below add exactly those
// contributions, with the scatter's order and arithmetic, so that a chunk's tokens get the
// single-device bits.

// The output rows of the chunk's last entry at levels 1..L-1 into edges [B*H][L-1][D], zero
// where that entry is not selected (adding +0.0 to a sum that starts at +0.0 is exact).
void output_edge_rows(const Plan& plan, DType dtype, const std::int32_t* position,
                      const void* o_sel, void* edges);

// Writes out's first c_{L-1} - 1 tokens again, with the previous chunk's output edges
// (prev_edges, [B*H][L-1][D]) at the levels whose entry lies before the chunk.
void scatter_edge_tokens(const Plan& plan, const void* o_sel, const std::int32_t* position,
                         const void* prev_edges, const TensorView& out);

// Writes the do_sel rows of the chunk's last entries (levels 1..L-1) again, summing after the
// chunk's last token the next chunk's first c_{L-1} - 1 dout tokens (next_dout,
// [B][c_{L-1} - 1][H][D]), in token order.
void scatter_backward_edge_rows(const Plan& plan, const TensorView& dout,
                                const std::int32_t* position, const void* next_dout, void* do_sel);

}  // namespace lighthouse::cpu
