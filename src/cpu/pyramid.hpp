// The pyramid on the CPU: the parameter-free scores of every level (token L2 norms, max-pooled
// per level). The pyramid's rows themselves (block means) are only ever needed for the selected
// entries, so the gather computes them (gather.hpp). Nothing here has a backward: the scores
// only choose the selection.
#pragma once

#include <cstdint>

#include "core/scores.hpp"
#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::cpu {

// Score of one token row, exactly as core/scores.hpp defines it for every backend.
template <typename T>
float token_score(const T* row, std::int64_t dim);

// Level scores of every (b, h) for q (into sq) and k (into sk): [B*H][pyramid_size] floats,
// level l at plan.offset[l], entry i = max of its tokens' scores.
void level_scores(const Plan& plan, const TensorView& q, const TensorView& k, float* sq, float* sk,
                  int threads);

}  // namespace lighthouse::cpu
