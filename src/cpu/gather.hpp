// The gather on the CPU: the selected pyramid rows of q, k and v (block means, computed here for
// the selected blocks only), written in causal order as [B*H][S][D], the layout the attention
// reads; and its backward, which spreads each gathered row's gradient back to the block's tokens
// (grad / c_l to each of its c_l tokens).
#pragma once

#include <cstdint>

#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::cpu {

// Gathers the selected pyramid rows of x into dst [B*H][S][D]: row s of (b, h) is the mean of the
// tokens of pyramid entry indices[(b*H + h)*S + s].
void gather_rows(const Plan& plan, const TensorView& x, const std::int32_t* indices, void* dst,
                 int threads);

// Backward of gather_rows: dx[b, t, h] = sum over levels l (in order) of
// grad_sel[pos_l(t / c_l)] / c_l, where `position` maps (b, h, pyramid index) -> row s or -1.
// dx is overwritten.
void gather_rows_backward(const Plan& plan, const void* grad_sel, const std::int32_t* position,
                          const TensorView& dx, int threads);

}  // namespace lighthouse::cpu
