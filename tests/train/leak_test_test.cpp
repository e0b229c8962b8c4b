// The leak test (src/train/leak_test.hpp) on a configuration where the original selection's leak
// is learned within seconds: a one-layer model on uniform random bytes, seq 512, L2 p2 K128. The
// original selection must leak (its held-out loss clearly below ln 256: the test can fail), the
// causal and stride selections and dense attention must not (their interval contains or lies above
// ln 256).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "lighthouse/error.hpp"
#include "train/leak_test.hpp"

namespace {

using lighthouse::Selection;
using lighthouse::train::LeakTestConfig;
using lighthouse::train::LeakTestResult;

LeakTestConfig small(Selection selection, int levels = 2) {
  LeakTestConfig c;
  c.train.model.layers = 1;
  c.train.model.dim = 32;
  c.train.model.heads = 2;
  c.train.model.init_std = 0.06;
  c.train.seq = 512;
  c.train.stage1_steps = 150;
  c.train.stage2_steps = 0;
  c.train.lighthouse.levels = levels;
  c.train.lighthouse.pool = 2;
  c.train.lighthouse.topk = 128;
  c.train.lighthouse.selection = selection;
  c.train.dense_layers = std::vector<int>{};
  c.train.schedule.lr = 1e-2;
  c.train.schedule.warmup = 10;
  c.train.schedule.decay = lighthouse::train::Decay::kConstant;
  c.train.seed = 1;
  c.train.threads = 1;  // one thread: fast and the same bits everywhere
  c.eval_tokens = 16384;
  return c;
}

void print(const char* what, const LeakTestResult& r) {
  std::printf(
      "[ leak     ] %-9s lighthouse ln256 %+.4f +- %.4f, dense ln256 %+.4f +- %.4f (%.1f s)\n",
      what, r.lighthouse.excess(), r.lighthouse.ci95, r.dense.excess(), r.dense.ci95, r.seconds);
}

TEST(LeakTest, OriginalSelectionLeaks) {
  const LeakTestResult r = lighthouse::train::run_leak_test(small(Selection::kOriginal));
  print("original", r);
  EXPECT_TRUE(r.leaks());
  EXPECT_LT(r.lighthouse.excess() + r.lighthouse.ci95, -0.02) << "not clearly below ln 256";
  // The model relies on the channel: without it (dense attention) it is worse than the entropy.
  EXPECT_GT(r.dense.excess(), r.lighthouse.excess());
}

TEST(LeakTest, CausalSelectionDoesNotLeak) {
  const LeakTestResult r = lighthouse::train::run_leak_test(small(Selection::kCausal));
  print("causal", r);
  EXPECT_FALSE(r.leaks());
  EXPECT_GE(r.lighthouse.excess() + r.lighthouse.ci95, 0.0);
  EXPECT_GE(r.dense.excess() + r.dense.ci95, 0.0);
}

// The content-free control reads no scores, so it has no channel to the future at all.
TEST(LeakTest, StrideSelectionDoesNotLeak) {
  const LeakTestResult r = lighthouse::train::run_leak_test(small(Selection::kStride));
  print("stride", r);
  EXPECT_FALSE(r.leaks());
  EXPECT_GE(r.lighthouse.excess() + r.lighthouse.ci95, 0.0);
  EXPECT_GE(r.dense.excess() + r.dense.ci95, 0.0);
}

TEST(LeakTest, DenseAttentionDoesNotLeak) {
  const LeakTestResult r = lighthouse::train::run_leak_test(small(Selection::kOriginal, 1));
  print("dense", r);
  EXPECT_FALSE(r.leaks());
}

TEST(LeakTest, RejectsADenseStageAndTooFewTokens) {
  LeakTestConfig c = small(Selection::kCausal);
  c.train.stage2_steps = 5;
  EXPECT_THROW(lighthouse::train::run_leak_test(c), lighthouse::InvalidArgument);
  c = small(Selection::kCausal);
  c.eval_tokens = 1;
  EXPECT_THROW(lighthouse::train::run_leak_test(c), lighthouse::InvalidArgument);
}

}  // namespace
