// lighthouse::make_plan(): the pyramid geometry, the tiling and S, and the shape rules that
// involve the sequence length.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "lighthouse/error.hpp"
#include "lighthouse/plan.hpp"
#include "support/invalid_argument.hpp"
#include "support/reference.hpp"

namespace {

using lhtest::expect_invalid;
using lighthouse::Config;
using lighthouse::make_plan;
using V = std::vector<std::int64_t>;

TEST(Plan, ThreeLevelGeometry) {
  const lighthouse::Plan plan = make_plan(lhtest::make_config(3, 4, 256), 2, 4096, 3, 64);
  EXPECT_EQ(plan.batch, 2);
  EXPECT_EQ(plan.seq, 4096);
  EXPECT_EQ(plan.heads, 3);
  EXPECT_EQ(plan.head_dim, 64);
  EXPECT_EQ(plan.block, (V{1, 4, 16}));
  EXPECT_EQ(plan.size, (V{4096, 1024, 256}));
  EXPECT_EQ(plan.offset, (V{0, 4096, 5120}));
  EXPECT_EQ(plan.pyramid_size, 4096 + 1024 + 256);
  EXPECT_EQ(plan.tiles, 2);
  EXPECT_EQ(plan.tile_entries, 128);
  EXPECT_EQ(plan.S, 256 + 2 * 4 * 256);
  EXPECT_DOUBLE_EQ(plan.scale, 1.0 / 8.0);
  EXPECT_FALSE(plan.dense());
}

TEST(Plan, SpecExampleGatheredLength) {
  // The spec: N = 512K, L = 3, p = 4, K = 2048 gives S = 49152.
  const lighthouse::Plan plan = make_plan(lhtest::make_config(3, 4, 2048), 1, 512 * 1024, 1, 128);
  EXPECT_EQ(plan.S, 49152);
  EXPECT_EQ(plan.tiles, 16);
  EXPECT_EQ(plan.tile_entries, 32768 / 16);
}

TEST(Plan, FourLevelsPoolTwoNonPowerOfTwoTile) {
  const lighthouse::Plan plan = make_plan(lhtest::make_config(4, 2, 384), 1, 4608, 1, 8);
  EXPECT_EQ(plan.block, (V{1, 2, 4, 8}));
  EXPECT_EQ(plan.size, (V{4608, 2304, 1152, 576}));
  EXPECT_EQ(plan.offset, (V{0, 4608, 6912, 8064}));
  EXPECT_EQ(plan.pyramid_size, 4608 + 2304 + 1152 + 576);
  EXPECT_EQ(plan.tiles, 3);
  EXPECT_EQ(plan.tile_entries, 192);
  EXPECT_EQ(plan.S, 576 + 3 * 2 * 384);
}

TEST(Plan, DenseSingleLevel) {
  // L = 1 is dense causal attention over the N tokens; topk plays no part.
  const lighthouse::Plan plan = make_plan(lhtest::make_config(1, 2, 128), 1, 100, 2, 16);
  EXPECT_TRUE(plan.dense());
  EXPECT_EQ(plan.block, (V{1}));
  EXPECT_EQ(plan.size, (V{100}));
  EXPECT_EQ(plan.offset, (V{0}));
  EXPECT_EQ(plan.pyramid_size, 100);
  EXPECT_EQ(plan.tiles, 1);
  EXPECT_EQ(plan.S, 100);
  EXPECT_DOUBLE_EQ(plan.scale, 0.25);
}

TEST(Plan, CallerScale) {
  const lighthouse::Plan plan = make_plan(lhtest::make_config(2, 2, 128, 0.3), 1, 256, 1, 64);
  EXPECT_DOUBLE_EQ(plan.scale, 0.3);
}

TEST(Plan, FlopsAndBytes) {
  const lighthouse::Plan plan = make_plan(lhtest::make_config(3, 4, 256), 2, 4096, 3, 64);
  const double S = 2304;
  EXPECT_DOUBLE_EQ(plan.attention_fwd_flops(), 4 * S * S / 2 * 64 * 2 * 3);
  EXPECT_DOUBLE_EQ(plan.attention_bwd_flops(), 2.5 * plan.attention_fwd_flops());
  EXPECT_DOUBLE_EQ(plan.dense_fwd_flops(), 4.0 * 4096 * 4096 / 2 * 64 * 2 * 3);
  EXPECT_GE(plan.gathered_bytes(4), 4 * 2 * 3 * 2304 * 64 * 4);  // at least q, k, v, o
  EXPECT_FALSE(plan.describe().empty());
}

TEST(Plan, RejectsSequenceNotDivisibleByCoarsestBlock) {
  // p^(L-1) = 16 does not divide 1000.
  expect_invalid([] { make_plan(lhtest::make_config(3, 4, 128), 1, 1000, 1, 64); },
                 {"seq", "N", "seq_len"}, "1000", {"divisible", "multiple"});
}

TEST(Plan, RejectsTilesThatDoNotDivideCoarsestLevel) {
  // The spec's crash case of the original: N = 32768, p = 2, K = 1536 (12 tiles), here with
  // L = 3: n_L = 8192 is not divisible by 12.
  expect_invalid([] { make_plan(lhtest::make_config(3, 2, 1536), 1, 32768, 1, 64); },
                 {"topk", "seq"}, "1536", {"divisible", "divide", "split evenly"});
}

TEST(Plan, RejectsTilesOfFewerThan128Entries) {
  // n_L = 256, 4 tiles of 64 coarse entries.
  expect_invalid([] { make_plan(lhtest::make_config(2, 4, 512), 1, 1024, 1, 64); }, {"topk", "seq"},
                 "512", {"128"});
  // n_L = 64 < 128 with a single tile.
  expect_invalid([] { make_plan(lhtest::make_config(3, 2, 128), 1, 256, 1, 64); }, {"topk", "seq"},
                 "", {"128"});
}

TEST(Plan, RejectsInvalidConfigAndSizes) {
  expect_invalid([] { make_plan(lhtest::make_config(0, 4, 2048), 1, 4096, 1, 64); }, {"levels"},
                 "0", {"1"});
  expect_invalid([] { make_plan(lhtest::make_config(3, 3, 2048), 1, 4096, 1, 64); }, {"pool"}, "3",
                 {"power of two", "power of 2"});
  expect_invalid([] { make_plan(lhtest::make_config(3, 4, 100), 1, 4096, 1, 64); }, {"topk"}, "100",
                 {"multiple of"});
  expect_invalid([] { make_plan(Config{}, 0, 4096, 1, 64); }, {"batch", "B"}, "0",
                 {"positive", ">"});
  expect_invalid([] { make_plan(Config{}, 1, 0, 1, 64); }, {"seq", "N", "seq_len"}, "0",
                 {"positive", ">", "divisible"});
  expect_invalid([] { make_plan(Config{}, 1, 4096, 0, 64); }, {"heads", "H"}, "0",
                 {"positive", ">"});
  expect_invalid([] { make_plan(Config{}, 1, 4096, 1, 0); }, {"head_dim", "D"}, "0",
                 {"positive", ">"});
}

}  // namespace
