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
  // p K = 768 entries of each finer level, every coarsest one; they add up to S.
  EXPECT_EQ(plan.entries_in_S(0), 768);
  EXPECT_EQ(plan.entries_in_S(2), 768);
  EXPECT_EQ(plan.entries_in_S(3), 576);
  EXPECT_EQ(
      plan.entries_in_S(0) + plan.entries_in_S(1) + plan.entries_in_S(2) + plan.entries_in_S(3),
      plan.S);
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
  EXPECT_EQ(plan.entries_in_S(0), 100);  // every token
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

// Any sequence length: a length that breaks a shape rule is padded to the smallest valid length
// >= N (a multiple of pool^(levels-1) x topk/128, at least pool^(levels-1) x topk, with the
// dilated scorer a multiple of the dilation), or, where that length's S would be >= N, the plan
// is dense causal attention on the N tokens.
TEST(Plan, PadsTheSpecsCrashCase) {
  // The original's crash case: N = 32768, p = 2, K = 1536 (12 tiles), here with L = 3: n_L = 8192
  // is not divisible by 12. The step is 4 x 12 = 48 tokens: 32784 = 683 x 48.
  const lighthouse::Plan plan = make_plan(lhtest::make_config(3, 2, 1536), 1, 32768, 1, 64);
  EXPECT_EQ(plan.seq, 32768);
  EXPECT_EQ(plan.padded_seq, 32784);
  EXPECT_TRUE(plan.runs_padded());
  EXPECT_FALSE(plan.dense_fallback);
  EXPECT_EQ(plan.size[0], 32784);
  EXPECT_EQ(plan.size.back(), 8196);
  EXPECT_EQ(plan.tile_entries, 683);
  EXPECT_EQ(plan.S, 8196 + 2 * 2 * 1536);
  EXPECT_NE(plan.describe().find("padded to 32784"), std::string::npos) << plan.describe();
}

TEST(Plan, PadsToTheSmallestValidLength) {
  // L = 2, p = 4, K = 256: step 4 x 2 = 8, at least 4 x 256 = 1024 tokens.
  const Config c = lhtest::make_config(2, 4, 256);
  for (std::int64_t n : {4097, 4100, 4103, 4104, 5000, 10007}) {
    const lighthouse::Plan plan = make_plan(c, 1, n, 1, 64);
    const std::int64_t want = (n + 7) / 8 * 8;
    EXPECT_EQ(plan.padded_seq, want) << n;
    EXPECT_EQ(plan.runs_padded(), want != n) << n;
    EXPECT_EQ(plan.size[0], want) << n;
    EXPECT_EQ(plan.S, want / 4 + 4 * 256) << n;
  }
  // A valid length is unchanged.
  const lighthouse::Plan valid = make_plan(c, 2, 8192, 3, 64);
  EXPECT_EQ(valid.padded_seq, 8192);
  EXPECT_FALSE(valid.needs_padding());
  // The dilated scorer adds its dilation to the step: lcm(8, 12) = 24.
  Config d = c;
  d.scorer = lighthouse::Scorer::kDilated;
  d.dilation = 12;
  EXPECT_EQ(make_plan(d, 1, 4097, 1, 64).padded_seq, 4104);
  EXPECT_EQ(make_plan(d, 1, 4105, 1, 64).padded_seq, 4128);
}

TEST(Plan, DenseWhereThePaddedSWouldReachN) {
  // p^(L-1) = 16 does not divide 1000; the padded length 2048 (16 x 128) would gather
  // S = 128 + 2 x 4 x 128 = 1152 >= 1000 entries.
  for (std::int64_t n : {1, 2, 17, 1000, 1151, 1152}) {
    const lighthouse::Plan plan = make_plan(lhtest::make_config(3, 4, 128), 2, n, 3, 64);
    EXPECT_TRUE(plan.dense_fallback) << n;
    EXPECT_TRUE(plan.dense()) << n;
    EXPECT_FALSE(plan.runs_padded()) << n;
    EXPECT_TRUE(plan.needs_padding()) << n;
    EXPECT_EQ(plan.seq, n);
    EXPECT_EQ(plan.S, n);
    EXPECT_EQ(plan.padded_seq, 2048);
    EXPECT_EQ(plan.padded_S, 1152);
    EXPECT_NE(plan.describe().find("dense causal attention"), std::string::npos);
  }
  // One more token than that S: padded, not dense.
  const lighthouse::Plan padded = make_plan(lhtest::make_config(3, 4, 128), 1, 1153, 1, 64);
  EXPECT_FALSE(padded.dense_fallback);
  EXPECT_EQ(padded.padded_seq, 2048);
  // n_L = 256 in 4 tiles of 64 coarse entries: padded to 2048, S = 2560 >= 1024.
  EXPECT_TRUE(make_plan(lhtest::make_config(2, 4, 512), 1, 1024, 1, 64).dense_fallback);
  // A valid length whose S exceeds N stays as it was (the original's function).
  const lighthouse::Plan valid = make_plan(lhtest::make_config(2, 2, 128), 1, 256, 1, 64);
  EXPECT_FALSE(valid.dense_fallback);
  EXPECT_EQ(valid.S, 384);
}

TEST(Plan, RejectsAPaddedLengthThatOverflows) {
  // pool^(levels-1) = 2^62: the padded length does not fit; 10^6 tokens are far more than S.
  expect_invalid([] { make_plan(lhtest::make_config(63, 2, 128), 1, 1000000, 1, 64); }, {"seq"},
                 "1000000", {"overflow"});
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
