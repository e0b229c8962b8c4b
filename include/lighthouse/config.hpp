// Lighthouse's three hyper-parameters and the rules they must satisfy on their own.
// Rules that involve the sequence length live in make_plan() (plan.hpp).
#pragma once

#include <optional>

namespace lighthouse {

// Entries kept per tile and level (half by query score, half by key score). Fixed by the
// original implementation; `topk` must be a multiple of it.
inline constexpr int kTileSize = 128;

struct Config {
  int levels = 3;   // L >= 1; L == 1 is plain dense causal attention (topk is then unused)
  int pool = 4;     // p: a power of two >= 2
  int topk = 2048;  // K: a positive multiple of kTileSize
  std::optional<double> scale;  // softmax scale; default 1/sqrt(head_dim)
};

// Checks levels, pool, topk and scale alone; throws InvalidArgument naming the parameter.
void validate(const Config& config);

}  // namespace lighthouse
