// An independent, deliberately slow float64 implementation of Lighthouse attention, written
// from the spec, docs/SPEC.md (pyramid, selection cascade in causal order, gather, dense causal
// attention over the S gathered rows, scatter, backward). It shares no code with the library,
// so agreement between the two is evidence that both follow the spec. Small sizes only: it
// materialises the S x S attention matrix of one (batch, head) at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lighthouse/config.hpp"

namespace lhtest {

// Sizes of a [B, N, H, D] problem. Element (b, n, h, d) of every tensor lives at
// ((b * N + n) * H + h) * D + d.
struct Shape {
  std::int64_t B = 1, N = 1, H = 1, D = 1;
  std::int64_t numel() const { return B * N * H * D; }
};

inline lighthouse::Config make_config(int levels, int pool, int topk,
                                      std::optional<double> scale = std::nullopt) {
  lighthouse::Config config;
  config.levels = levels;
  config.pool = pool;
  config.topk = topk;
  config.scale = scale;
  return config;
}

// The selection score of one token row (float32-representable values): the float32 value of its
// L2 norm, the squares summed in float64 in the spec's fixed tree (chunks of 8 in d order, the
// chunk sums added pairwise); NaN scores -inf. Every backend computes it the same way, so all see
// bit-identical scores and the selected indices can be compared exactly.
float token_score(const double* row, std::int64_t D);

// Dense causal softmax attention of one head over S rows (row s attends rows 0..s): the output
// o [S, D] and log-sum-exp lse [S] and, when dout is given, the gradients of <o, dout> [S, D].
// The attention stage of the function above, and the reference of every dense attention kernel
// (the CPU's, cuDNN's, the GPU's float32 kernels). Row by row: memory O(S * D).
struct DenseAttention {
  std::vector<double> o, lse, dq, dk, dv;
};
DenseAttention dense_causal_attention(const std::vector<double>& q, const std::vector<double>& k,
                                      const std::vector<double>& v, const std::vector<double>& dout,
                                      std::int64_t S, std::int64_t D, double scale);

// Length of the gathered sub-sequence: n_L + (L - 1) p K.
std::int64_t gathered_length(const lighthouse::Config& config, std::int64_t N);

// Pyramid and selection for one (batch, head): pyramid indices in causal order from token scores.
// Throws std::invalid_argument for a configuration the spec rejects.
std::vector<std::int32_t> select_head(const lighthouse::Config& config,
                                      const std::vector<float>& sq, const std::vector<float>& sk);

// The dilated scorer's token scores of one (batch, head), read literally from the spec: for each
// residue j < dilation, the tokens {t : t mod dilation = j} in order; causal softmax attention
// in float64 at scale 1/sqrt(D) among them, Attn(Q, K, V) and Attn(K, Q, V); a token's query
// (key) score is the float32 value of the L2 norm of its row of the first (second) output.
void dilated_scores(const Shape& shape, const std::vector<double>& q, const std::vector<double>& k,
                    const std::vector<double>& v, std::int64_t b, std::int64_t h, int dilation,
                    std::vector<float>& sq, std::vector<float>& sk);

// Selected indices of every (batch, head): [B, H, S], with the norm scorer.
std::vector<std::int32_t> select(const lighthouse::Config& config, const Shape& shape,
                                 const std::vector<double>& q, const std::vector<double>& k);
// The same with config.scorer's token scores (the dilated scorer reads v too).
std::vector<std::int32_t> select(const lighthouse::Config& config, const Shape& shape,
                                 const std::vector<double>& q, const std::vector<double>& k,
                                 const std::vector<double>& v);

// ---- Grouped-query attention (kv_heads dividing H), restated through the MHA functions: k and v
// ([B, N, Hkv, D]) expanded to every query head, the group's selection copied to each of its heads.

// One selection per KV group, [B, Hkv, S]: a token's key score is its KV head's, its query score
// the max over the group's H / Hkv query heads (shape: q's, with H query heads).
std::vector<std::int32_t> select_gqa(const lighthouse::Config& config, const Shape& shape,
                                     std::int64_t kv_heads, const std::vector<double>& q,
                                     const std::vector<double>& k);
// [B, N, Hkv, D] -> [B, N, H, D], query head h reading KV head h / (H / Hkv).
std::vector<double> expand_kv(const Shape& shape, std::int64_t kv_heads,
                              const std::vector<double>& x);
// [B, Hkv, S] -> [B, H, S].
std::vector<std::int32_t> expand_indices(const Shape& shape, std::int64_t kv_heads,
                                         const std::vector<std::int32_t>& indices);
// The adjoint of expand_kv: [B, N, H, D] -> [B, N, Hkv, D], each group's heads summed.
std::vector<double> sum_kv_groups(const Shape& shape, std::int64_t kv_heads,
                                  const std::vector<double>& grad);

// Output for a given selection (gather, attention and scatter): [B, N, H, D].
std::vector<double> attend(const lighthouse::Config& config, const Shape& shape,
                           const std::vector<double>& q, const std::vector<double>& k,
                           const std::vector<double>& v, const std::vector<std::int32_t>& indices);

// The output at the given tokens only, [B, tokens.size(), H, D]: row by row, for sequences whose
// S x S attention matrix attend() could not hold.
std::vector<double> attend_tokens(const lighthouse::Config& config, const Shape& shape,
                                  const std::vector<double>& q, const std::vector<double>& k,
                                  const std::vector<double>& v,
                                  const std::vector<std::int32_t>& indices,
                                  const std::vector<std::int64_t>& tokens);

struct Gradients {
  std::vector<double> dq, dk, dv;  // [B, N, H, D]
};

// Gradients of <out, dout> for a given (constant) selection.
Gradients backward(const lighthouse::Config& config, const Shape& shape,
                   const std::vector<double>& q, const std::vector<double>& k,
                   const std::vector<double>& v, const std::vector<std::int32_t>& indices,
                   const std::vector<double>& dout);

// ||a - b|| / ||b|| (or ||a - b|| when b is zero).
double rel_l2(const std::vector<double>& a, const std::vector<double>& b);
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace lhtest
