// The units of the pipelined CUDA forward (cuda/head_groups.hpp): host arithmetic, no GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>

#include "cuda/head_groups.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cuda {
namespace {

TEST(HeadGroups, ResolveClampsToTheHeadCount) {
  EXPECT_EQ(resolve_head_groups(0, 8), kAutomaticHeadGroups);
  EXPECT_EQ(resolve_head_groups(2, 8), 2);
  EXPECT_EQ(resolve_head_groups(8, 8), 8);
  EXPECT_EQ(resolve_head_groups(64, 8), 8);
  EXPECT_EQ(resolve_head_groups(3, 1), 1);
}

// Every (batch, head) in exactly one unit, in bh order, units within one batch, sizes within one.
TEST(HeadGroups, UnitsCoverEveryRowOnceInOrder) {
  for (std::int64_t batch : {1, 2, 3}) {
    for (std::int64_t heads : {1, 2, 4, 7, 8, 16}) {
      for (int groups = 1; groups <= heads; ++groups) {
        const auto units = head_groups(batch, heads, groups);
        ASSERT_EQ(units.size(), static_cast<std::size_t>(batch * groups));
        std::int64_t next_bh = 0, smallest = heads, largest = 0;
        for (const HeadGroup& u : units) {
          EXPECT_EQ(u.batch * heads + u.head0, next_bh) << batch << "x" << heads << "/" << groups;
          EXPECT_GE(u.heads, 1);
          EXPECT_LE(u.head0 + u.heads, heads);
          next_bh += u.heads;
          smallest = std::min(smallest, u.heads);
          largest = std::max(largest, u.heads);
        }
        EXPECT_EQ(next_bh, batch * heads);
        EXPECT_LE(largest - smallest, 1);
        EXPECT_EQ(units.front().heads, largest);  // the larger groups first
      }
    }
  }
}

TEST(HeadGroups, RejectsCountsOutsideOneToHeads) {
  EXPECT_THROW(head_groups(1, 4, 0), Error);
  EXPECT_THROW(head_groups(1, 4, 5), Error);
}

}  // namespace
}  // namespace lighthouse::cuda
