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
//              flowing from it depend on positions <= t only.
enum class Selection { kOriginal, kCausal };

const char* selection_name(Selection selection);  // "original", "causal"
// "original" or "causal"; anything else throws InvalidArgument(param, text, the choices).
Selection parse_selection(const std::string& text, const std::string& param = "selection");

struct Config {
  int levels = 3;   // L >= 1; L == 1 is plain dense causal attention (topk is then unused)
  int pool = 4;     // p: a power of two >= 2
  int topk = 2048;  // K: a positive multiple of kTileSize
  std::optional<double> scale;                 // softmax scale; default 1/sqrt(head_dim)
  Selection selection = Selection::kOriginal;  // the original's semantics unless asked
};

// Checks levels, pool, topk, scale and selection alone; throws InvalidArgument naming the
// parameter.
void validate(const Config& config);

}  // namespace lighthouse
