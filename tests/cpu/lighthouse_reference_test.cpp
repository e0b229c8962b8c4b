// The CPU backend against the independent float64 reference (tests/support/reference.cpp) on
// many small configurations: the selected indices must be identical, the outputs and gradients
// equal to float64 rounding (float64 path) or float32 rounding (float32 path).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "lighthouse/lighthouse.hpp"
#include "support/library_run.hpp"
#include "support/random.hpp"
#include "support/reference.hpp"

namespace {

using lhtest::Shape;
using lighthouse::Config;
using lighthouse::DType;

constexpr double kTolFloat64 = 1e-10;
constexpr double kTolFloat32 = 1e-5;

struct Case {
  Shape shape;
  int levels, pool, topk;
};

std::string case_name(const Case& c) {
  char name[96];
  std::snprintf(name, sizeof name, "B%lldN%lldH%lldD%lld_L%dp%dK%d",
                static_cast<long long>(c.shape.B), static_cast<long long>(c.shape.N),
                static_cast<long long>(c.shape.H), static_cast<long long>(c.shape.D), c.levels,
                c.pool, c.topk);
  return name;
}

// Every level count and pooling factor, one and several tiles, tiles of more than 128 coarse
// entries (C = 160, 192, 256), head dims 8..64, B and H up to 3. N is as small as C >= 128
// allows, so the float64 reference stays fast.
const Case kCases[] = {
    {{1, 256, 2, 16}, 1, 2, 128},                                  // dense causal attention
    {{2, 384, 1, 8}, 1, 4, 256},                                   // dense, N not a power of two
    {{2, 256, 2, 32}, 2, 2, 128},                                  // C = 128
    {{1, 512, 3, 8}, 2, 2, 256},                                   // 2 tiles
    {{1, 1024, 2, 16}, 2, 4, 256},                                 // 2 tiles
    {{3, 640, 1, 64}, 2, 4, 128},                                  // C = 160
    {{1, 1024, 1, 64}, 2, 8, 128}, {{1, 2048, 1, 8}, 2, 8, 256},   // 2 tiles
    {{2, 1024, 1, 16}, 3, 2, 256},                                 // 2 tiles
    {{1, 1536, 2, 8}, 3, 2, 384},                                  // 3 tiles
    {{2, 1024, 2, 64}, 3, 2, 128},                                 // C = 256
    {{1, 2048, 2, 32}, 3, 4, 128}, {{1, 4096, 1, 8}, 3, 4, 256},   // 2 tiles
    {{1, 8192, 1, 8}, 3, 8, 128},  {{1, 1536, 2, 24}, 4, 2, 128},  // C = 192
    {{1, 2048, 2, 8}, 4, 2, 256},                                  // 2 tiles
    {{1, 8192, 1, 8}, 4, 4, 128},  {{1, 65536, 1, 8}, 4, 8, 128},
};

struct Errors {
  double out = 0, dq = 0, dk = 0, dv = 0;
  double max() const { return std::max({out, dq, dk, dv}); }
};

// Runs the library in `dtype` and compares with the reference results.
Errors compare(const lhtest::Problem& problem, DType dtype,
               const std::vector<std::int32_t>& indices, const std::vector<double>& out,
               const lhtest::Gradients& grads) {
  const lhtest::Outputs lib = lhtest::run_library(problem, dtype);
  EXPECT_EQ(lib.plan.S,
            static_cast<std::int64_t>(indices.size()) / (problem.shape.B * problem.shape.H));
  EXPECT_TRUE(lib.indices == indices)
      << "selected indices differ from the reference (" << lighthouse::dtype_name(dtype) << ")";
  return {lhtest::rel_l2(lib.out, out), lhtest::rel_l2(lib.dq, grads.dq),
          lhtest::rel_l2(lib.dk, grads.dk), lhtest::rel_l2(lib.dv, grads.dv)};
}

class RandomConfig : public ::testing::TestWithParam<Case> {};

TEST_P(RandomConfig, MatchesReferenceInFloat64AndFloat32) {
  const Case& c = GetParam();
  const Config config{.levels = c.levels, .pool = c.pool, .topk = c.topk, .scale = {}};
  const lhtest::Problem problem =
      lhtest::random_problem(config, c.shape, 1000 + c.shape.N + c.levels * 10 + c.pool);

  const std::vector<std::int32_t> indices = lhtest::select(config, c.shape, problem.q, problem.k);
  ASSERT_EQ(static_cast<std::int64_t>(indices.size()),
            c.shape.B * c.shape.H * lhtest::gathered_length(config, c.shape.N));
  const std::vector<double> out =
      lhtest::attend(config, c.shape, problem.q, problem.k, problem.v, indices);
  const lhtest::Gradients grads =
      lhtest::backward(config, c.shape, problem.q, problem.k, problem.v, indices, problem.dout);

  const Errors e64 = compare(problem, DType::kFloat64, indices, out, grads);
  const Errors e32 = compare(problem, DType::kFloat32, indices, out, grads);
  std::printf(
      "[ errors   ] %-24s f64 out %.1e dq %.1e dk %.1e dv %.1e | f32 out %.1e dq %.1e "
      "dk %.1e dv %.1e\n",
      case_name(c).c_str(), e64.out, e64.dq, e64.dk, e64.dv, e32.out, e32.dq, e32.dk, e32.dv);
  EXPECT_LT(e64.max(), kTolFloat64);
  EXPECT_LT(e32.max(), kTolFloat32);
}

INSTANTIATE_TEST_SUITE_P(Cpu, RandomConfig, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return case_name(info.param);
                         });

// A caller-given softmax scale replaces 1/sqrt(D).
TEST(ReferenceComparison, CustomScale) {
  const Shape shape{1, 512, 2, 16};
  const Config config{.levels = 2, .pool = 2, .topk = 128, .scale = 0.7};
  const lhtest::Problem problem = lhtest::random_problem(config, shape, 7);
  const auto indices = lhtest::select(config, shape, problem.q, problem.k);
  const auto out = lhtest::attend(config, shape, problem.q, problem.k, problem.v, indices);
  const auto grads =
      lhtest::backward(config, shape, problem.q, problem.k, problem.v, indices, problem.dout);
  const lhtest::Outputs lib = lhtest::run_library(problem, DType::kFloat64);
  EXPECT_DOUBLE_EQ(lib.plan.scale, 0.7);
  EXPECT_TRUE(lib.indices == indices);
  EXPECT_LT(lhtest::rel_l2(lib.out, out), kTolFloat64);
  EXPECT_LT(lhtest::rel_l2(lib.dq, grads.dq), kTolFloat64);
  EXPECT_LT(lhtest::rel_l2(lib.dk, grads.dk), kTolFloat64);
  // The default scale would give a different output: the test can fail.
  Config default_scale = config;
  default_scale.scale.reset();
  EXPECT_GT(
      lhtest::rel_l2(lhtest::attend(default_scale, shape, problem.q, problem.k, problem.v, indices),
                     out),
      1e-3);
}

// Equal scores are broken by candidate position, at both stages of a level's selection. Rows
// that are sign patterns of one vector have bit-identical norms; with every query norm equal
// the 64 entries kept by query score are the first 64 candidates, with every key norm equal
// the 64 kept by key score are the first 64 candidates left over.
TEST(ReferenceComparison, TiesBrokenByCandidatePosition) {
  const Shape shape{1, 1024, 2, 8};
  const Config config = lhtest::make_config(3, 2, 256);
  const lhtest::Problem random = lhtest::random_problem(config, shape, 11);
  const auto equal_norms = [&](std::vector<double>& x, std::uint64_t seed) {
    lhtest::Rng rng(seed);
    for (std::int64_t row = 0; row < shape.N * shape.H; ++row) {
      for (std::int64_t d = 0; d < shape.D; ++d) {
        x[row * shape.D + d] = (rng.next() & 1 ? -1.0 : 1.0) * (0.25 + 0.125 * d);
      }
    }
  };
  for (const char* which : {"q", "k", "q and k"}) {
    SCOPED_TRACE(::testing::Message() << which << " norms all equal");
    lhtest::Problem problem = random;
    if (which[0] == 'q') equal_norms(problem.q, 5);
    if (which[0] == 'k' || which[1] == ' ') equal_norms(problem.k, 6);
    const auto indices = lhtest::select(config, shape, problem.q, problem.k);
    const auto out = lhtest::attend(config, shape, problem.q, problem.k, problem.v, indices);
    for (DType dtype : {DType::kFloat64, DType::kFloat32}) {
      const lhtest::Outputs lib = lhtest::run_library(problem, dtype, {}, false);
      EXPECT_TRUE(lib.indices == indices) << lighthouse::dtype_name(dtype);
      EXPECT_LT(lhtest::rel_l2(lib.out, out), dtype == DType::kFloat64 ? kTolFloat64 : kTolFloat32);
    }
  }
}

// q, k, v, out and the gradients may be strided views (here [B, H, N, D] buffers viewed as
// [B, N, H, D]); only D needs a unit stride.
TEST(ReferenceComparison, PermutedViews) {
  const Shape shape{2, 512, 3, 16};
  const Config config{.levels = 2, .pool = 4, .topk = 128, .scale = {}};
  const lhtest::Problem problem = lhtest::random_problem(config, shape, 13);
  const auto indices = lhtest::select(config, shape, problem.q, problem.k);
  const auto out = lhtest::attend(config, shape, problem.q, problem.k, problem.v, indices);
  const auto grads =
      lhtest::backward(config, shape, problem.q, problem.k, problem.v, indices, problem.dout);

  // Stores x ([B, N, H, D] values) as a [B, H, N, D] tensor and returns the permuted view.
  const Shape bhnd{shape.B, shape.H, shape.N, shape.D};
  std::vector<lighthouse::Tensor> keep;
  auto permuted = [&](const std::vector<double>& x) {
    std::vector<double> y(x.size());
    for (std::int64_t b = 0; b < shape.B; ++b)
      for (std::int64_t n = 0; n < shape.N; ++n)
        for (std::int64_t h = 0; h < shape.H; ++h)
          for (std::int64_t d = 0; d < shape.D; ++d)
            y[((b * shape.H + h) * shape.N + n) * shape.D + d] =
                x[((b * shape.N + n) * shape.H + h) * shape.D + d];
    keep.push_back(lhtest::to_tensor(y, DType::kFloat64, bhnd));
    return keep.back().view().transposed(1, 2);
  };
  const std::vector<double> nan(shape.numel(), std::nan(""));
  const auto q = permuted(problem.q), k = permuted(problem.k), v = permuted(problem.v),
             o = permuted(nan), dout = permuted(problem.dout), dq = permuted(nan),
             dk = permuted(nan), dv = permuted(nan);
  lighthouse::Context ctx;
  lighthouse::forward(config, q, k, v, o, ctx);
  lighthouse::backward(ctx, dout, dq, dk, dv);
  EXPECT_TRUE(ctx.indices() == indices);
  EXPECT_LT(lhtest::rel_l2(lhtest::to_vector(o), out), kTolFloat64);
  EXPECT_LT(lhtest::rel_l2(lhtest::to_vector(dq), grads.dq), kTolFloat64);
  EXPECT_LT(lhtest::rel_l2(lhtest::to_vector(dk), grads.dk), kTolFloat64);
  EXPECT_LT(lhtest::rel_l2(lhtest::to_vector(dv), grads.dv), kTolFloat64);
}

// The context keeps what backward needs: q, k, v may be overwritten after forward().
TEST(ReferenceComparison, BackwardDoesNotReadInputsAfterForward) {
  const Shape shape{1, 512, 2, 16};
  const Config config{.levels = 2, .pool = 2, .topk = 128, .scale = {}};
  const lhtest::Problem problem = lhtest::random_problem(config, shape, 17);
  const lhtest::Outputs expected = lhtest::run_library(problem, DType::kFloat32);

  const lighthouse::Tensor q = lhtest::to_tensor(problem.q, DType::kFloat32, shape),
                           k = lhtest::to_tensor(problem.k, DType::kFloat32, shape),
                           v = lhtest::to_tensor(problem.v, DType::kFloat32, shape),
                           out = lhtest::nan_tensor(DType::kFloat32, shape);
  lighthouse::Context ctx;
  lighthouse::forward(config, q, k, v, out, ctx);
  for (const lighthouse::Tensor* t : {&q, &k, &v}) {
    std::fill_n(t->data<float>(), t->numel(), std::nanf(""));
  }
  const lighthouse::Tensor dout = lhtest::to_tensor(problem.dout, DType::kFloat32, shape),
                           dq = lhtest::nan_tensor(DType::kFloat32, shape),
                           dk = lhtest::nan_tensor(DType::kFloat32, shape),
                           dv = lhtest::nan_tensor(DType::kFloat32, shape);
  lighthouse::backward(ctx, dout, dq, dk, dv);
  EXPECT_TRUE(lhtest::same_bits(lhtest::to_vector(dq), expected.dq));
  EXPECT_TRUE(lhtest::same_bits(lhtest::to_vector(dk), expected.dk));
  EXPECT_TRUE(lhtest::same_bits(lhtest::to_vector(dv), expected.dv));
}

// Properties of the reference's own selection that follow directly from the spec, so that a
// reference bug does not silently become the library's standard.
TEST(Reference, SelectionStructure) {
  const Shape shape{1, 4096, 1, 8};
  const Config config{.levels = 3, .pool = 4, .topk = 256, .scale = {}};
  const lhtest::Problem problem = lhtest::random_problem(config, shape, 19);
  const auto idx = lhtest::select(config, shape, problem.q, problem.k);
  // N = 4096: levels of 4096, 1024, 256 entries at offsets 0, 4096, 5120.
  ASSERT_EQ(idx.size(), 256u + 2 * 4 * 256);
  std::vector<int> count(4096 + 1024 + 256, 0);
  for (std::int32_t a : idx) {
    ASSERT_GE(a, 0);
    ASSERT_LT(a, 4096 + 1024 + 256);
    ++count[a];
  }
  int level[3] = {0, 0, 0};
  for (std::size_t a = 0; a < count.size(); ++a) {
    ASSERT_LE(count[a], 1) << "pyramid index " << a << " gathered twice";
    level[a >= 5120 ? 2 : a >= 4096 ? 1 : 0] += count[a];
  }
  EXPECT_EQ(level[2], 256);          // every coarsest entry
  EXPECT_EQ(level[1], 4 * 128 * 2);  // children of the 128 kept per tile, 2 tiles
  EXPECT_EQ(level[0], 4 * 128 * 2);
  // Keys ascend (the reference throws on a tie), so level-1 tokens appear in increasing order.
  std::int32_t last = -1;
  for (std::int32_t a : idx) {
    if (a < 4096) {
      EXPECT_GT(a, last);
      last = a;
    }
  }
}

// L = 1 is plain dense causal attention: token t attends to tokens 0..t.
TEST(Reference, DenseIsCausalAttention) {
  const Shape shape{1, 8, 1, 2};
  const Config config{.levels = 1, .pool = 2, .topk = 128, .scale = 1.0};
  const lhtest::Problem problem = lhtest::random_problem(config, shape, 23);
  const auto idx = lhtest::select(config, shape, problem.q, problem.k);
  ASSERT_EQ(idx.size(), 8u);
  for (int t = 0; t < 8; ++t) EXPECT_EQ(idx[t], t);
  const auto out = lhtest::attend(config, shape, problem.q, problem.k, problem.v, idx);
  // Token 0 sees only itself; token 1 a two-way softmax, written out by hand.
  EXPECT_NEAR(out[0], problem.v[0], 1e-15);
  const double* q = problem.q.data();
  const double* k = problem.k.data();
  const double l0 = q[2] * k[0] + q[3] * k[1], l1 = q[2] * k[2] + q[3] * k[3];
  const double w1 = 1.0 / (1.0 + std::exp(l0 - l1));
  EXPECT_NEAR(out[2], (1 - w1) * problem.v[0] + w1 * problem.v[2], 1e-14);
}

}  // namespace
