#include "cuda/head_groups.hpp"

#include <algorithm>
#include <string>

#include "lighthouse/error.hpp"

namespace lighthouse::cuda {

int resolve_head_groups(int requested, std::int64_t heads) {
  const int groups = requested > 0 ? requested : kAutomaticHeadGroups;
  return static_cast<int>(std::min<std::int64_t>(groups, std::max<std::int64_t>(heads, 1)));
}

std::vector<HeadGroup> head_groups(std::int64_t batch, std::int64_t heads, int groups) {
  if (groups < 1 || groups > heads) {
    throw Error("head_groups: " + std::to_string(groups) + " groups of " + std::to_string(heads) +
                " heads (must be between 1 and the head count)");
  }
  std::vector<HeadGroup> units;
  units.reserve(static_cast<std::size_t>(batch * groups));
  const std::int64_t base = heads / groups, larger = heads % groups;
  for (std::int64_t b = 0; b < batch; ++b) {
    std::int64_t h0 = 0;
    for (std::int64_t i = 0; i < groups; ++i) {
      const std::int64_t count = base + (i < larger ? 1 : 0);
      units.push_back({b, h0, count});
      h0 += count;
    }
  }
  return units;
}

}  // namespace lighthouse::cuda
