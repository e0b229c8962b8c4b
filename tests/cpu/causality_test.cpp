// The spec's causality guarantee: given the selection, changing v_t, or changing q_t and k_t
// without changing their norms (a sign flip of one component), leaves the output of every
// token < t bit for bit unchanged. Each case also checks that some output at >= t does change,
// so that a test which compares nothing cannot pass.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "lighthouse/lighthouse.hpp"
#include "support/library_run.hpp"
#include "support/random.hpp"

namespace {

using lhtest::Shape;
using lighthouse::Config;
using lighthouse::DType;

struct Case {
  Shape shape;
  int levels, pool, topk;
  DType dtype;
};

std::int64_t row(const Shape& s, std::int64_t b, std::int64_t n, std::int64_t h) {
  return ((b * s.N + n) * s.H + h) * s.D;
}

// Checks `changed` against `base` around token t of batch 0: tokens < t identical in every
// head, batch 1.. identical entirely, and some token >= t of batch 0 different.
void expect_causal(const Shape& s, std::int64_t t, const std::vector<double>& base,
                   const std::vector<double>& changed, const std::string& what) {
  const auto bits_equal = [&](std::int64_t from, std::int64_t to) {
    return std::memcmp(&base[from], &changed[from], (to - from) * sizeof(double)) == 0;
  };
  EXPECT_TRUE(bits_equal(0, row(s, 0, t, 0)))
      << what << ": an output before token " << t << " changed";
  EXPECT_TRUE(bits_equal(row(s, 1, 0, 0), s.numel())) << what << ": another batch changed";
  EXPECT_FALSE(bits_equal(row(s, 0, t, 0), row(s, 1, 0, 0)))
      << what << ": no output at or after token " << t << " changed (the test proves nothing)";
}

class Causality : public ::testing::TestWithParam<Case> {};

TEST_P(Causality, EarlierOutputsBitwiseUnchanged) {
  const Case& c = GetParam();
  const Shape& s = c.shape;
  const Config config{.levels = c.levels, .pool = c.pool, .topk = c.topk, .scale = {}};
  const lhtest::Problem problem = lhtest::random_problem(config, s, 600 + c.levels);
  // One thread: dozens of small calls; thread-count independence is determinism_test's job.
  const lighthouse::Options one_thread{.threads = 1};
  const lhtest::Outputs base = lhtest::run_library(problem, c.dtype, one_thread, false);

  // Block boundaries of every level (c_L = p^(L-1) and c_2 = p), the first and last tokens,
  // and a token inside a block.
  std::int64_t coarse = 1;
  for (int l = 1; l < c.levels; ++l) coarse *= c.pool;
  const std::int64_t ts[] = {
      0,           1,       c.pool - 1,   c.pool,  coarse - 1, coarse, coarse + 1, 3 * coarse + 2,
      s.N / 2 - 1, s.N / 2, s.N - coarse, s.N - 2, s.N - 1};
  lhtest::Rng rng(700);
  for (std::int64_t t : ts) {
    if (t < 0 || t >= s.N) continue;
    SCOPED_TRACE(::testing::Message() << "t = " << t);

    lhtest::Problem changed_v = problem;  // any new value for v_t, every head
    for (std::int64_t h = 0; h < s.H; ++h) {
      for (std::int64_t d = 0; d < s.D; ++d) {
        changed_v.v[row(s, 0, t, h) + d] = lhtest::to_float(3.0 * rng.normal());
      }
    }
    const lhtest::Outputs rv = lhtest::run_library(changed_v, c.dtype, one_thread, false);
    EXPECT_TRUE(rv.indices == base.indices) << "v must not influence the selection";
    expect_causal(s, t, base.out, rv.out, "v_t changed");

    lhtest::Problem flipped = problem;  // same norms, other directions
    for (std::int64_t h = 0; h < s.H; ++h) {
      const std::int64_t d = rng.below(s.D);
      flipped.q[row(s, 0, t, h) + d] *= -1;
      flipped.k[row(s, 0, t, h) + (d + 1) % s.D] *= -1;
    }
    const lhtest::Outputs rf = lhtest::run_library(flipped, c.dtype, one_thread, false);
    EXPECT_TRUE(rf.indices == base.indices) << "norms unchanged, so the selection must be too";
    expect_causal(s, t, base.out, rf.out, "sign of q_t and k_t flipped");
  }
}

INSTANTIATE_TEST_SUITE_P(Cpu, Causality,
                         ::testing::Values(Case{{2, 2048, 2, 16}, 3, 4, 128, DType::kFloat32},
                                           Case{{2, 2048, 2, 16}, 3, 4, 128, DType::kFloat64},
                                           Case{{2, 1024, 1, 8}, 4, 2, 128, DType::kFloat32},
                                           Case{{2, 1024, 1, 32}, 2, 8, 128, DType::kFloat32},
                                           Case{{2, 200, 1, 16}, 1, 2, 128, DType::kFloat32}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           char name[48];
                           std::snprintf(name, sizeof name, "L%dp%d_%s", info.param.levels,
                                         info.param.pool, lighthouse::dtype_name(info.param.dtype));
                           return std::string(name);
                         });

}  // namespace
