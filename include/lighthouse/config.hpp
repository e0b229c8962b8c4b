// Lighthouse's three hyper-parameters and the rules they must satisfy on their own.
// Rules that involve the sequence length live in make_plan() (plan.hpp).
#pragma once

#include <optional>
#include <string>

namespace lighthouse {

// Entries kept per tile and level (half by query score, half by key score). Fixed by the
// original implementation; `topk` must be a multiple of it.
inline constexpr int kTileSize = 128;

// How the selection decides which blocks are refined (docs/SPEC.md):
//   kOriginal  the original's per-tile top-k over whole-block scores: its choice of which blocks
//              to refine depends on later tokens (the selection leaks the future, issue 11);
//   kCausal    each block's refinement is decided from tokens up to its first token only, in
//              position order with static per-tile quotas: the output at t and every gradient
//              flowing from it depend on positions <= t only;
//   kStride    the content-free control of the causal rule: the same candidates in position
//              order, but each tile and level keeps the last of every n/128 consecutive ones,
//              reading no scores at all (a fixed layout, causal and deterministic by
//              construction; issue 11's "measure the alternatives").
enum class Selection { kOriginal, kCausal, kStride };

const char* selection_name(Selection selection);  // "original", "causal", "stride"
// "original", "causal" or "stride"; anything else throws InvalidArgument(param, text, the
// choices).
Selection parse_selection(const std::string& text, const std::string& param = "selection");

// Where the level-0 (token) scores come from (docs/SPEC.md, "Modes beyond the original"):
//   kNorm     the L2 norms of the q and k rows (the original's default);
//   kDilated  the original's DilatedLighthouseScorer: per head, tokens split into `dilation`
//             interleaved subsequences {i : i mod dilation = j}; causal attention within each,
//             Attn(Q, K, V) and Attn(K, Q, V) at scale 1/sqrt(D); the scores are the L2 norms of
//             the two outputs (query score, key score). Costs two causal attentions of length
//             N / dilation per subsequence, forward only.
// Coarser levels are max-pooled from level 0 either way, and no gradient flows through scores.
enum class Scorer { kNorm, kDilated };

const char* scorer_name(Scorer scorer);  // "norm", "dilated"
// "norm" or "dilated"; anything else throws InvalidArgument(param, text, the choices).
Scorer parse_scorer(const std::string& text, const std::string& param = "scorer");

struct Config {
  int levels = 3;   // L >= 1; L == 1 is plain dense causal attention (topk is then unused)
  int pool = 4;     // p: a power of two >= 2
  int topk = 2048;  // K: a positive multiple of kTileSize
  std::optional<double> scale;                 // softmax scale; default 1/sqrt(head_dim)
  Selection selection = Selection::kOriginal;  // the original's semantics unless asked
  Scorer scorer = Scorer::kNorm;               // the token scores (see Scorer)
  int dilation = 4;  // kDilated: interleaved subsequences, >= 1; must divide the sequence length
};

// Checks levels, pool, topk, scale, selection, scorer and dilation alone; throws InvalidArgument
// naming the parameter.
void validate(const Config& config);

}  // namespace lighthouse
