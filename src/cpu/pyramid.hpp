// The pyramid on the CPU: the parameter-free scores of every level (token scores -- the L2 norms of
// the q and k rows, or the dilated scorer's, Config::scorer -- max-pooled per level). The pyramid's
// rows themselves (block means) are only ever needed for the selected entries, so the gather
// computes them (gather.hpp). Nothing here has a backward: the scores only choose the selection.
#pragma once

#include <cstdint>

#include "core/scores.hpp"
#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::cpu {

// Score of one token row, exactly as core/scores.hpp defines it for every backend.
template <typename T>
float token_score(const T* row, std::int64_t dim);

// Level scores of every (b, g) of the KV groups, query scores into sq and key scores into sk:
// [B*Hkv][pyramid_size] floats, level l at plan.offset[l], entry i = max of its tokens' scores.
// A token's key score is its KV head's; its query score the max over the group's query heads
// (the head's own without GQA). v is read by the dilated scorer only (which needs Hkv = H).
void level_scores(const Plan& plan, const TensorView& q, const TensorView& k, const TensorView& v,
                  float* sq, float* sk, int threads);

// The dilated scorer's token scores (level 0 only) of every (b, h) into sq and sk, rows of
// `stride` floats: for each of the plan's `dilation` interleaved subsequences, causal attention
// at scale 1/sqrt(D) through the CPU attention stage, Attn(Q, K, V) -> query scores and
// Attn(K, Q, V) -> key scores, each the token_score() of the output row.
void dilated_token_scores(const Plan& plan, const TensorView& q, const TensorView& k,
                          const TensorView& v, float* sq, float* sk, std::int64_t stride,
                          int threads);

}  // namespace lighthouse::cpu
