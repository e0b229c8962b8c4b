// The dilated scorer (Config::scorer = kDilated) on the CPU: its token scores against the float64
// reference's literal reading of the spec, the whole function against the reference (indices
// identical, outputs and gradients to rounding), the dilation rule, and that the mode really
// changes the selection (a test of the norm scorer would not notice a scorer that is ignored).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu/pyramid.hpp"
#include "lighthouse/lighthouse.hpp"
#include "support/invalid_argument.hpp"
#include "support/library_run.hpp"
#include "support/random.hpp"
#include "support/reference.hpp"

namespace {

using lhtest::Shape;
using lighthouse::Config;
using lighthouse::DType;
using lighthouse::Scorer;

Config dilated_config(int levels, int pool, int topk, int dilation) {
  Config config = lhtest::make_config(levels, pool, topk);
  config.scorer = Scorer::kDilated;
  config.dilation = dilation;
  return config;
}

// The library's token scores (float64 inputs, float64 attention) against the reference's: both
// are float32 roundings of the same float64 norms, computed in different orders, so they agree to
// a float32 ulp or two.
TEST(DilatedScorer, TokenScoresMatchTheFloat64Reference) {
  for (const int dilation : {1, 2, 4, 8}) {
    SCOPED_TRACE(dilation);
    const Shape s{2, 256, 3, 16};
    const Config config = dilated_config(2, 2, 128, dilation);
    const lhtest::Problem p = lhtest::random_problem(config, s, 11);
    const lighthouse::Plan plan = lighthouse::make_plan(config, s.B, s.N, s.H, s.D);
    const lighthouse::Tensor q = lhtest::to_tensor(p.q, DType::kFloat64, s),
                             k = lhtest::to_tensor(p.k, DType::kFloat64, s),
                             v = lhtest::to_tensor(p.v, DType::kFloat64, s);
    std::vector<float> sq(s.B * s.H * s.N), sk(s.B * s.H * s.N);
    lighthouse::cpu::dilated_token_scores(plan, q, k, v, sq.data(), sk.data(), s.N, 2);
    int compared = 0;
    for (std::int64_t b = 0; b < s.B; ++b) {
      for (std::int64_t h = 0; h < s.H; ++h) {
        std::vector<float> rq, rk;
        lhtest::dilated_scores(s, p.q, p.k, p.v, b, h, dilation, rq, rk);
        for (std::int64_t t = 0; t < s.N; ++t) {
          const std::int64_t at = (b * s.H + h) * s.N + t;
          ASSERT_NEAR(sq[at], rq[t], 2e-7 * rq[t]) << "query score, token " << t;
          ASSERT_NEAR(sk[at], rk[t], 2e-7 * rk[t]) << "key score, token " << t;
          ++compared;
        }
      }
    }
    EXPECT_EQ(compared, s.B * s.H * s.N);
  }
}

// The first token of each subsequence attends to itself only: its query score is |v_t|, its key
// score too (a known answer, independent of the reference).
TEST(DilatedScorer, FirstTokenOfEachSubsequenceScoresItsValueNorm) {
  const Shape s{1, 64, 1, 8};
  const Config config = dilated_config(1, 2, 128, 4);
  const lhtest::Problem p = lhtest::random_problem(config, s, 3);
  const lighthouse::Plan plan = lighthouse::make_plan(config, s.B, s.N, s.H, s.D);
  const lighthouse::Tensor q = lhtest::to_tensor(p.q, DType::kFloat64, s),
                           k = lhtest::to_tensor(p.k, DType::kFloat64, s),
                           v = lhtest::to_tensor(p.v, DType::kFloat64, s);
  std::vector<float> sq(s.N), sk(s.N);
  lighthouse::cpu::dilated_token_scores(plan, q, k, v, sq.data(), sk.data(), s.N, 1);
  for (std::int64_t t = 0; t < 4; ++t) {
    const float norm = lighthouse::cpu::token_score(&p.v[t * s.D], s.D);
    EXPECT_FLOAT_EQ(sq[t], norm) << t;
    EXPECT_FLOAT_EQ(sk[t], norm) << t;
  }
}

struct Case {
  Shape shape;
  int levels, pool, topk, dilation;
  lighthouse::Selection selection;
};

class DilatedReference : public ::testing::TestWithParam<Case> {};

// The whole function in float64 and float32 against the reference: identical indices, outputs and
// gradients to rounding.
TEST_P(DilatedReference, MatchesTheFloat64Reference) {
  const Case& c = GetParam();
  Config config = dilated_config(c.levels, c.pool, c.topk, c.dilation);
  config.selection = c.selection;
  const lhtest::Problem p = lhtest::random_problem(config, c.shape, 5);
  const auto indices = lhtest::select(config, c.shape, p.q, p.k, p.v);
  const auto out = lhtest::attend(config, c.shape, p.q, p.k, p.v, indices);
  const auto grads = lhtest::backward(config, c.shape, p.q, p.k, p.v, indices, p.dout);
  for (const auto& [dtype, tol] : {std::pair{DType::kFloat64, 1e-10}, {DType::kFloat32, 1e-5}}) {
    SCOPED_TRACE(lighthouse::dtype_name(dtype));
    const lhtest::Outputs lib = lhtest::run_library(p, dtype);
    EXPECT_TRUE(lib.indices == indices) << "selected indices differ from the reference";
    EXPECT_LT(lhtest::rel_l2(lib.out, out), tol);
    EXPECT_LT(lhtest::rel_l2(lib.dq, grads.dq), tol);
    EXPECT_LT(lhtest::rel_l2(lib.dk, grads.dk), tol);
    EXPECT_LT(lhtest::rel_l2(lib.dv, grads.dv), tol);
  }
  // The scorer matters: the norm scorer picks other entries on the same inputs.
  Config norm = config;
  norm.scorer = Scorer::kNorm;
  EXPECT_FALSE(lhtest::select(norm, c.shape, p.q, p.k) == indices);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DilatedReference,
    ::testing::Values(Case{{1, 512, 2, 16}, 2, 2, 128, 4, lighthouse::Selection::kOriginal},
                      Case{{2, 1024, 1, 32}, 3, 2, 128, 2, lighthouse::Selection::kOriginal},
                      Case{{1, 2048, 1, 8}, 3, 4, 128, 8, lighthouse::Selection::kOriginal},
                      Case{{1, 1024, 2, 16}, 3, 2, 256, 4, lighthouse::Selection::kCausal},
                      Case{{1, 768, 1, 8}, 2, 2, 128, 3, lighthouse::Selection::kOriginal}));

TEST(DilatedScorer, DilationMustDivideTheSequence) {
  Config config = dilated_config(3, 2, 128, 3);
  // A dilation that does not divide N pads N to a multiple of it (any sequence length).
  EXPECT_EQ(lighthouse::make_plan(config, 1, 1024, 1, 16).padded_seq, 1032);
  config.dilation = 0;
  lhtest::expect_invalid([&] { lighthouse::validate(config); }, {"dilation"}, "0", {">= 1"});
  config.dilation = 4;
  EXPECT_EQ(lighthouse::make_plan(config, 1, 1024, 1, 16).S, 256 + 2 * 2 * 128);
  lhtest::expect_invalid([] { lighthouse::parse_scorer("dilate"); }, {"scorer"}, "dilate",
                         {"norm or dilated"});
}

// The dilated scorer's FLOPs: two causal attentions of length N / dilation per subsequence.
TEST(DilatedScorer, PlanCountsTheScorersFlops) {
  const Config config = dilated_config(3, 4, 2048, 4);
  const lighthouse::Plan plan = lighthouse::make_plan(config, 2, 65536, 8, 128);
  EXPECT_DOUBLE_EQ(plan.scorer_flops(), 4.0 * 2 * 8 * 65536.0 * 65536.0 * 128 / 4);
  Config norm = config;
  norm.scorer = Scorer::kNorm;
  EXPECT_DOUBLE_EQ(lighthouse::make_plan(norm, 2, 65536, 8, 128).scorer_flops(),
                   4.0 * 2 * 8 * 65536 * 128);
}

// Same bits on every run and for any thread count (the attention stage's promise carries over).
TEST(DilatedScorer, DeterministicAcrossThreadCounts) {
  const Shape s{1, 2048, 2, 32};
  const Config config = dilated_config(3, 2, 256, 4);
  const lhtest::Problem p = lhtest::random_problem(config, s, 9);
  const lhtest::Outputs one = lhtest::run_library(p, DType::kFloat32, {.threads = 1});
  const lhtest::Outputs two = lhtest::run_library(p, DType::kFloat32, {.threads = 2});
  const lhtest::Outputs three = lhtest::run_library(p, DType::kFloat32, {.threads = 3});
  for (const auto* r : {&two, &three}) {
    EXPECT_TRUE(r->indices == one.indices);
    EXPECT_TRUE(r->out == one.out);
    EXPECT_TRUE(r->dq == one.dq);
    EXPECT_TRUE(r->dk == one.dk);
    EXPECT_TRUE(r->dv == one.dv);
  }
}

}  // namespace
