// Which of `lighthouse bench`'s measurements run together. The targets compare
// Lighthouse with its floor (dense attention at S) measured in the same run; the GPU's speed
// drifts between loops run one after another, so with side-by-side timing the lighthouse and
// floor jobs of one N are timed in one alternating loop (measure_side_by_side) instead of two.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "bench/bench_measure.hpp"

namespace lighthouse::cli {

struct JobKey {
  Impl impl;
  std::int64_t seq;
};

// Indices into `jobs`, one group per measurement, in the order of each group's first job. With
// `side_by_side`, the lighthouse and floor jobs of one N form a group of two, lighthouse first
// (whatever their order in `jobs`); every other job, and every job without `side_by_side`, is a
// group of its own. Each index appears exactly once.
std::vector<std::vector<std::size_t>> measurement_groups(const std::vector<JobKey>& jobs,
                                                         bool side_by_side);

}  // namespace lighthouse::cli
