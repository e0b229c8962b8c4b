// measurement_groups() (cli/bench/bench_pairing.hpp): which bench jobs share one alternating loop.
#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

#include "bench/bench_pairing.hpp"

namespace lighthouse::cli {
namespace {

using Groups = std::vector<std::vector<std::size_t>>;
constexpr Impl kD = Impl::kDense, kL = Impl::kLighthouse, kF = Impl::kFloor;

// Every index once, whatever the grouping.
void expect_partition(const Groups& groups, std::size_t jobs) {
  std::vector<int> seen(jobs, 0);
  for (const auto& g : groups) {
    for (std::size_t i : g) {
      ASSERT_LT(i, jobs);
      ++seen[i];
    }
  }
  for (std::size_t i = 0; i < jobs; ++i) EXPECT_EQ(seen[i], 1) << "job " << i;
}

TEST(BenchPairing, TheDefaultOrderPairsLighthouseAndFloorOfEachN) {
  const std::vector<JobKey> jobs = {{kD, 512},  {kL, 512},  {kF, 512},
                                    {kD, 1024}, {kL, 1024}, {kF, 1024}};
  const Groups groups = measurement_groups(jobs, true);
  EXPECT_EQ(groups, (Groups{{0}, {1, 2}, {3}, {4, 5}}));
  expect_partition(groups, jobs.size());
}

TEST(BenchPairing, LighthouseComesFirstWhateverTheImplOrder) {
  const std::vector<JobKey> jobs = {{kF, 512}, {kD, 512}, {kL, 512}};
  EXPECT_EQ(measurement_groups(jobs, true), (Groups{{2, 0}, {1}}));
}

// Partners are matched by N, not by position.
TEST(BenchPairing, PartnersShareTheirN) {
  const std::vector<JobKey> jobs = {{kL, 512}, {kL, 1024}, {kF, 1024}, {kF, 512}};
  EXPECT_EQ(measurement_groups(jobs, true), (Groups{{0, 3}, {1, 2}}));
  const std::vector<JobKey> apart = {{kL, 512}, {kF, 1024}};
  EXPECT_EQ(measurement_groups(apart, true), (Groups{{0}, {1}}));
}

TEST(BenchPairing, WithoutAPartnerOrSideBySideEveryJobIsAlone) {
  const std::vector<JobKey> lone = {{kD, 512}, {kL, 512}, {kD, 1024}, {kL, 1024}};
  EXPECT_EQ(measurement_groups(lone, true), (Groups{{0}, {1}, {2}, {3}}));
  const std::vector<JobKey> floors = {{kF, 512}, {kF, 1024}};
  EXPECT_EQ(measurement_groups(floors, true), (Groups{{0}, {1}}));
  const std::vector<JobKey> both = {{kL, 512}, {kF, 512}, {kD, 512}};
  EXPECT_EQ(measurement_groups(both, false), (Groups{{0}, {1}, {2}}));
  EXPECT_TRUE(measurement_groups({}, true).empty());
}

}  // namespace
}  // namespace lighthouse::cli
