// A plan is everything that follows from (config, B, N, H, D) before any data is seen: the
// pyramid's geometry, the gathered length S, the tiling of the coarsest level, and FLOP and
// memory estimates. make_plan() is where every shape rule of the spec is enforced.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lighthouse/config.hpp"

namespace lighthouse {

struct Plan {
  Config config;
  std::int64_t batch = 0, seq = 0, heads = 0, head_dim = 0;
  // Any sequence length (docs/SPEC.md): the smallest length >= seq that satisfies every shape
  // rule of the config, on which the stages run (q, k, v padded with zeros, outputs and gradients
  // cut back to seq). padded_seq == seq when seq needs no padding. The geometry below (block,
  // size, offset, pyramid_size, tiles, S) is the padded length's. The exception: where the padded
  // length's S would be >= seq, the plan is dense causal attention on the seq tokens
  // (dense_fallback; config.levels is then 1, padded_S the S it avoided).
  std::int64_t padded_seq = 0;
  bool dense_fallback = false;
  std::int64_t padded_S = 0;  // dense_fallback only
  // The stages run on padded copies of the tensors (padded_seq > seq, not the dense fallback).
  bool runs_padded() const { return !dense_fallback && padded_seq != seq; }
  // seq is not a valid length of its own (padded, or the dense fallback).
  bool needs_padding() const { return padded_seq != seq; }
  // This plan at the padded length: what the backends run.
  Plan padded() const {
    Plan p = *this;
    p.seq = padded_seq;
    return p;
  }
  // Heads of k and v (grouped-query attention): a divisor of `heads`; kv_heads == heads is
  // ordinary multi-head attention, kv_heads == 1 multi-query attention. Query head h belongs to
  // KV group h / group(); the selection is made once per group.
  std::int64_t kv_heads = 0;
  std::int64_t group() const { return heads / kv_heads; }
  double scale = 0;  // the softmax scale in effect

  // Per level l = 0..L-1 (level 1 of the spec is l = 0): block size c_l = p^l, number of
  // entries n_l = N / c_l and the offset of the level in the pyramid index.
  std::vector<std::int64_t> block, size, offset;
  std::int64_t pyramid_size = 0;  // sum of n_l

  std::int64_t tiles = 0;         // K / 128 (1 when L == 1)
  std::int64_t tile_entries = 0;  // C = n_L / tiles
  std::int64_t S = 0;             // gathered length per (batch, head): n_L + (L-1) p K
  // Entries of level l in the gathered sub-sequence per (batch, head): every coarsest entry, the
  // p K children of the kept entries at each finer level; S is their sum. Only level 0's are
  // tokens whose output comes from their own query.
  std::int64_t entries_in_S(std::size_t l) const;

  bool dense() const { return config.levels == 1; }

  // Attention FLOPs of one pass, causal (half of the S x S / N x N products), all heads.
  double attention_fwd_flops() const;  // 4 * S^2/2 * D * B * H
  double attention_bwd_flops() const;  // 2.5 x forward (5 products instead of 2)
  double dense_fwd_flops() const;      // the same at length N
  double dense_bwd_flops() const;
  // FLOPs of the scores (forward only; no gradient flows through them): the norm scorer's squares
  // and sums (4 B H N D: q and k), or the dilated scorer's two causal attentions per
  // subsequence, 2 x dilation x 4 (N/dilation)^2/2 D per (batch, head) = 4 B H N^2 D / dilation.
  double scorer_flops() const;
  // Bytes of the gathered q, k, v, o (and softmax stats) kept for the backward pass (k and v once
  // per KV group).
  std::int64_t gathered_bytes(std::size_t element_size) const;

  std::string describe() const;  // multi-line human-readable summary
};

// Builds the plan; throws InvalidArgument for any violated rule (the message names the
// parameter, its value and the rule). kv_heads = 0 means kv_heads = heads. Any seq >= 1 is
// accepted: a length that breaks a rule tied to it is padded (padded_seq above).
Plan make_plan(const Config& config, std::int64_t batch, std::int64_t seq, std::int64_t heads,
               std::int64_t head_dim, std::int64_t kv_heads = 0);

}  // namespace lighthouse
