// The same inputs give the same bits: on a second run, and with a different number of threads
// (forward outputs, selected indices and all three gradients).
#include <gtest/gtest.h>

#include <string>

#include "lighthouse/lighthouse.hpp"
#include "support/library_run.hpp"
#include "support/random.hpp"

namespace {

using lighthouse::Config;
using lighthouse::DType;

void expect_same(const lhtest::Outputs& a, const lhtest::Outputs& b, const std::string& what) {
  EXPECT_TRUE(a.indices == b.indices) << what << ": indices";
  EXPECT_TRUE(lhtest::same_bits(a.out, b.out)) << what << ": out";
  EXPECT_TRUE(lhtest::same_bits(a.dq, b.dq)) << what << ": dq";
  EXPECT_TRUE(lhtest::same_bits(a.dk, b.dk)) << what << ": dk";
  EXPECT_TRUE(lhtest::same_bits(a.dv, b.dv)) << what << ": dv";
}

class Determinism : public ::testing::TestWithParam<DType> {};

TEST_P(Determinism, RepeatedRunsAndThreadCountsGiveIdenticalBits) {
  const DType dtype = GetParam();
  struct Case {
    lhtest::Shape shape;
    Config config;
  };
  // Several (batch, head) pairs and tiles so that work really is split between threads.
  const Case cases[] = {
      {{2, 2048, 2, 16}, {.levels = 3, .pool = 4, .topk = 128, .scale = {}}},
      {{2, 1024, 2, 16}, {.levels = 2, .pool = 4, .topk = 256, .scale = {}}},
      {{3, 256, 1, 16}, {.levels = 1, .pool = 2, .topk = 128, .scale = {}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "L = " << c.config.levels);
    const lhtest::Problem problem = lhtest::random_problem(c.config, c.shape, 800);
    const lhtest::Outputs two = lhtest::run_library(problem, dtype, {.threads = 2});
    const lhtest::Outputs again = lhtest::run_library(problem, dtype, {.threads = 2});
    const lhtest::Outputs one = lhtest::run_library(problem, dtype, {.threads = 1});
    const lhtest::Outputs three = lhtest::run_library(problem, dtype, {.threads = 3});
    const lhtest::Outputs all = lhtest::run_library(problem, dtype, {.threads = 0});
    expect_same(two, again, "two runs, 2 threads");
    expect_same(two, one, "2 threads vs 1 thread");
    expect_same(two, three, "2 threads vs 3 threads");
    expect_same(two, all, "2 threads vs all hardware threads");
  }
}

INSTANTIATE_TEST_SUITE_P(Cpu, Determinism, ::testing::Values(DType::kFloat32, DType::kFloat64),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(lighthouse::dtype_name(info.param));
                         });

}  // namespace
