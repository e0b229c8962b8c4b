// The selection stage on the CPU: the per-tile hierarchical selection cascade (the original's
// top-k, the causal rule or its content-free stride control, Config::selection) and the causal
// order of the gathered sub-sequence.
#pragma once

#include <cstdint>

#include "lighthouse/plan.hpp"

namespace lighthouse::cpu {

// sq, sk: level scores, [B*Hkv][pyramid_size] (pyramid.hpp; Hkv = plan.kv_heads, one selection
// per KV group). Writes
//   indices  [B*Hkv][S]: pyramid index of every gathered entry, in causal (key) order;
//   position [B*Hkv][pyramid_size]: the row s of each pyramid entry, or -1 if not gathered.
// Tiles are independent and each occupies a fixed, contiguous range of S (its entries' keys lie
// inside the tile's token range), so no global sort is needed.
void select_entries(const Plan& plan, const float* sq, const float* sk, std::int32_t* indices,
                    std::int32_t* position, int threads);

// The causal selection's look-back (docs/SPEC.md) at a level of `candidates` candidates
// (n >= 128): a candidate is eligible by query score when it beats the `query` candidates before
// it, by key score when it beats the `key` ones before it. With r = n / 64 (integer division),
// query = r - 1 and key = r - 2, so that on scores without structure about 64 candidates are
// eligible by each (1 in r, and 1 in r - 1 of those not taken by query score).
struct CausalWindows {
  std::int64_t query, key;
};
CausalWindows causal_windows(std::int64_t candidates);

// The stride rule (docs/SPEC.md): the candidate position (0-based, ascending in m) of the m-th
// of the 128 candidates kept out of `candidates` (>= 128): ceil((m + 1) * candidates / 128) - 1.
std::int64_t stride_kept(std::int64_t candidates, std::int64_t m);

// Entries a tile contributes: its C coarsest entries plus p * 128 candidates per finer level.
std::int64_t entries_per_tile(const Plan& plan);

}  // namespace lighthouse::cpu
