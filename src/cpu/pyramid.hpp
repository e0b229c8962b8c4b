// Stage 1 of the spec on the CPU: parameter-free scores (token L2 norms, max-pooled per level)
// and the pyramid rows themselves (block means), gathered straight into the order the dense
// attention reads; plus the backward of that gather (each pyramid row spreads grad / c_l to its
// c_l tokens).
#pragma once

#include <cstdint>

#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::cpu {

// Level (0-based) of a pyramid index: the last level whose offset is <= idx.
inline int level_of(const Plan& plan, std::int64_t idx) {
  int l = static_cast<int>(plan.offset.size()) - 1;
  while (plan.offset[l] > idx) --l;
  return l;
}

// Score of one token row: (float) sqrt(s), s = sum_d (double) x_d^2 added in a fixed tree: the
// row is cut into chunks of kScoreChunk consecutive elements (the last may be shorter), each
// chunk summed in d order from 0; the chunk sums, padded with zeros to a power-of-two count, are
// added pairwise, neighbours first: ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + ...). This exact
// definition is shared by every backend so that selections agree bit for bit (the GPU gives a
// chunk to each lane and combines the lanes by a butterfly in that order). NaN maps to -inf so
// that rankings stay a strict order.
inline constexpr std::int64_t kScoreChunk = 8;
template <typename T>
float token_score(const T* row, std::int64_t dim);

// Level scores of every (b, h) for q (into sq) and k (into sk): [B*H][pyramid_size] floats,
// level l at plan.offset[l], entry i = max of its tokens' scores.
void level_scores(const Plan& plan, const TensorView& q, const TensorView& k, float* sq, float* sk,
                  int threads);

// Gathers the selected pyramid rows of x into dst [B*H][S][D]: row s of (b, h) is the mean of the
// tokens of pyramid entry indices[(b*H + h)*S + s].
void gather_rows(const Plan& plan, const TensorView& x, const std::int32_t* indices, void* dst,
                 int threads);

// Backward of gather_rows: dx[b, t, h] = sum over levels l (in order) of
// grad_sel[pos_l(t / c_l)] / c_l, where `position` maps (b, h, pyramid index) -> row s or -1.
// dx is overwritten.
void spread_rows(const Plan& plan, const void* grad_sel, const std::int32_t* position,
                 const TensorView& dx, int threads);

}  // namespace lighthouse::cpu
