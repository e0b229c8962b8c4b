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

}  // namespace lighthouse::cpu
