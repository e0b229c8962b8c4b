// The pyramid on the CPU: the parameter-free scores of every level (token L2 norms, max-pooled
// per level). The pyramid's rows themselves (block means) are only ever needed for the selected
// entries, so the gather computes them (gather.hpp). Nothing here has a backward: the scores
// only choose the selection.
#pragma once

#include <cstdint>

#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::cpu {

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

}  // namespace lighthouse::cpu
