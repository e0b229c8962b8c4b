// The units of the CUDA forward's pipeline (Options::head_groups): every batch's heads cut into
// contiguous groups. A unit (b, h0, heads) is the rows bh = b * H + h0 .. b * H + h0 + heads - 1
// of every [BH, ...] buffer, so the stage kernels run on it as a problem of their own
// (stages.hpp: Geometry with batch 1 and `heads` heads, buffers advanced by b * H + h0 rows).
#pragma once

#include <cstdint>
#include <vector>

namespace lighthouse::cuda {

// Group count of Options::head_groups = 0, until measurements choose another.
inline constexpr int kAutomaticHeadGroups = 1;

struct HeadGroup {
  std::int64_t batch = 0, head0 = 0, heads = 0;
};

// The group count a call uses: `requested` (0 = kAutomaticHeadGroups), at most `heads`.
int resolve_head_groups(int requested, std::int64_t heads);

// Batch-major units: each batch's heads cut into `groups` (>= 1, <= heads) contiguous ranges
// whose sizes differ by at most one, the larger first.
std::vector<HeadGroup> head_groups(std::int64_t batch, std::int64_t heads, int groups);

}  // namespace lighthouse::cuda
