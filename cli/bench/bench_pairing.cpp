#include "bench/bench_pairing.hpp"

namespace lighthouse::cli {

std::vector<std::vector<std::size_t>> measurement_groups(const std::vector<JobKey>& jobs,
                                                         bool side_by_side) {
  std::vector<std::vector<std::size_t>> groups;
  std::vector<bool> placed(jobs.size(), false);
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (placed[i]) continue;
    placed[i] = true;
    std::vector<std::size_t> group{i};
    const bool pairs = jobs[i].impl == Impl::kLighthouse || jobs[i].impl == Impl::kFloor;
    if (side_by_side && pairs) {
      const Impl partner = jobs[i].impl == Impl::kLighthouse ? Impl::kFloor : Impl::kLighthouse;
      for (std::size_t j = i + 1; j < jobs.size(); ++j) {
        if (!placed[j] && jobs[j].impl == partner && jobs[j].seq == jobs[i].seq) {
          placed[j] = true;
          if (partner == Impl::kLighthouse) {
            group.insert(group.begin(), j);
          } else {
            group.push_back(j);
          }
          break;
        }
      }
    }
    groups.push_back(group);
  }
  return groups;
}

}  // namespace lighthouse::cli
