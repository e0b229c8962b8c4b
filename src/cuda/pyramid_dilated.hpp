// The dilated scorer on the GPU (Config::scorer = kDilated), part of the pyramid stage: for each
// head and each residue j < dilation, causal attention over the tokens {t : t mod dilation = j}
// through the attention stage (cuDNN for bf16/fp16, the reference kernels for fp32), forward
// only, at scale 1/sqrt(D): Attn(Q, K, V) gives the query scores and Attn(K, Q, V) the key scores,
// each the token score (core/scores.hpp) of the output row; levels 2..L are max-pooled from them
// as for the norm scorer. The selection and everything after it are unchanged.
//
// The dilated problems are one attention call each: a [B, N, H, D] view whose token stride is H
// head strides (heads packed inside a token, as a model's projections give) is a
// [B, dilation * H, N / dilation, D] view of (b, j * H + h, m, d) without a copy; other layouts
// are copied first.
#pragma once

#include <cuda_runtime.h>

#include "cuda/stages.hpp"
#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::cuda {

// Overwrites what launch_pyramid wrote into score_q, score_k (levels 2..L) and, with g.causal,
// first_q, first_k with the dilated scorer's scores. Its scratch (one output block of q's size,
// statistics, token scores, copies) comes from the stream-ordered pool and is freed in stream
// order.
void dilated_scores(const Plan& plan, const Geometry& g, DType dtype, const TensorView& q,
                    const TensorView& k, const TensorView& v, float* score_q, float* score_k,
                    float* first_q, float* first_k, cudaStream_t stream);

}  // namespace lighthouse::cuda
