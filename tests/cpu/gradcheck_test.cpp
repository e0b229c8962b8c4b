// Finite-difference checks of the gradients, in float64: the loss is <out, w> for a random w,
// so backward(dout = w) must return its gradient. Central differences on random coordinates
// of q, k and v (Richardson-extrapolated); the selection is a constant of the backward pass, so a
// perturbation that changes it is skipped (and counted: most must survive).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>

#include "lighthouse/lighthouse.hpp"
#include "support/library_run.hpp"
#include "support/random.hpp"
#include "support/reference.hpp"

namespace {

using lhtest::Shape;
using lighthouse::Config;
using lighthouse::DType;

// Large enough that rounding noise in the loss (~1e-13 absolute) stays far below the signal,
// small enough (with Richardson extrapolation) that truncation error is ~1e-12.
constexpr double kStep = 1e-3;
constexpr int kCoordinates = 6;  // per tensor

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// loss(q, k, v, &indices): <out, w> and the selection it used.
using Loss = std::function<double(const lhtest::Problem&, std::vector<std::int32_t>*)>;

// Richardson-extrapolated central difference of `loss` along coordinate i of q, k or v:
// (4 D(h/2) - D(h)) / 3 cancels the h^2 term, leaving O(h^4). Returns false if a perturbation
// changed the selection (the loss is not differentiable there).
bool finite_difference(const lhtest::Problem& problem, int which, std::int64_t i,
                       const std::vector<std::int32_t>& indices, const Loss& loss, double* out) {
  double central[2];
  for (int half = 0; half < 2; ++half) {
    const double h = half ? kStep / 2 : kStep;
    lhtest::Problem plus = problem, minus = problem;
    (which == 0 ? plus.q : which == 1 ? plus.k : plus.v)[i] += h;
    (which == 0 ? minus.q : which == 1 ? minus.k : minus.v)[i] -= h;
    std::vector<std::int32_t> ip, im;
    const double fp = loss(plus, &ip), fm = loss(minus, &im);
    if (ip != indices || im != indices) return false;
    central[half] = (fp - fm) / (2 * h);
  }
  *out = (4 * central[1] - central[0]) / 3;
  return true;
}

// Compares analytic gradients with finite differences at random coordinates and returns the
// largest error relative to max(|grad|, 1e-2 * rms(grad)).
double check(const lhtest::Problem& problem, const std::vector<std::int32_t>& indices,
             const lhtest::Gradients& grads, const Loss& loss, std::uint64_t seed) {
  lhtest::Rng rng(seed);
  double worst = 0;
  int used = 0, nonzero = 0;
  for (int which = 0; which < 3; ++which) {
    const std::vector<double>& grad = which == 0 ? grads.dq : which == 1 ? grads.dk : grads.dv;
    const double rms = std::sqrt(dot(grad, grad) / grad.size());
    for (int trial = 0; trial < kCoordinates; ++trial) {
      const std::int64_t i = rng.below(static_cast<std::int64_t>(grad.size()));
      double fd = 0;
      if (!finite_difference(problem, which, i, indices, loss, &fd)) continue;
      ++used;
      const double err = std::abs(fd - grad[i]) / std::max(std::abs(grad[i]), 1e-2 * rms);
      worst = std::max(worst, err);
      if (grad[i] != 0) ++nonzero;
      EXPECT_LT(err, 1e-5) << "tensor "
                           << "qkv"[which] << " element " << i << ": analytic " << grad[i]
                           << ", finite difference " << fd;
    }
  }
  EXPECT_GE(used, 3 * kCoordinates - 2) << "too many perturbations changed the selection";
  EXPECT_GE(nonzero, used / 2) << "mostly zero gradients: the check proves little";
  return worst;
}

struct Case {
  Shape shape;
  int levels, pool, topk;
  std::int64_t kv_heads = 0;  // grouped-query attention when below shape.H
};

class LibraryGradcheck : public ::testing::TestWithParam<Case> {};

TEST_P(LibraryGradcheck, MatchesFiniteDifferencesInFloat64) {
  const Case& c = GetParam();
  const Config config{.levels = c.levels, .pool = c.pool, .topk = c.topk, .scale = {}};
  const lhtest::Problem problem =
      lhtest::random_problem(config, c.shape, 300 + c.levels, c.kv_heads);
  const lhtest::Outputs lib = lhtest::run_library(problem, DType::kFloat64);  // dout = w
  const Loss loss = [](const lhtest::Problem& p, std::vector<std::int32_t>* indices) {
    // One thread: dozens of small calls; thread-count independence is determinism_test's job.
    const lhtest::Outputs r = lhtest::run_library(p, DType::kFloat64, {.threads = 1}, false);
    *indices = r.indices;
    return dot(r.out, p.dout);
  };
  const double worst = check(problem, lib.indices, {lib.dq, lib.dk, lib.dv}, loss, 400 + c.levels);
  std::printf("[ gradcheck] library L=%d p=%d kv_heads=%lld: worst relative error %.2e\n", c.levels,
              c.pool, static_cast<long long>(c.kv_heads), worst);
}

INSTANTIATE_TEST_SUITE_P(
    Cpu, LibraryGradcheck,
    ::testing::Values(Case{{1, 96, 2, 8}, 1, 2, 128}, Case{{1, 512, 2, 8}, 2, 2, 128},
                      Case{{2, 1024, 1, 8}, 3, 2, 128}, Case{{1, 2048, 1, 8}, 3, 4, 128},
                      Case{{1, 512, 4, 8}, 3, 2, 128, 2}, Case{{1, 512, 3, 8}, 2, 2, 128, 1}),
    [](const ::testing::TestParamInfo<Case>& info) {
      char name[48];
      std::snprintf(name, sizeof name, "L%dp%d", info.param.levels, info.param.pool);
      if (info.param.kv_heads == 0) return std::string(name);
      return std::string(name) + "kv" + std::to_string(info.param.kv_heads);
    });

// The reference's own backward against finite differences of its own forward.
TEST(ReferenceGradcheck, MatchesFiniteDifferences) {
  const Shape shape{1, 512, 2, 8};
  const Config config{.levels = 3, .pool = 2, .topk = 128, .scale = {}};
  const lhtest::Problem problem = lhtest::random_problem(config, shape, 500);
  const auto indices = lhtest::select(config, shape, problem.q, problem.k);
  const lhtest::Gradients grads =
      lhtest::backward(config, shape, problem.q, problem.k, problem.v, indices, problem.dout);
  const Loss loss = [&](const lhtest::Problem& p, std::vector<std::int32_t>* idx) {
    *idx = lhtest::select(p.config, p.shape, p.q, p.k);
    return dot(lhtest::attend(p.config, p.shape, p.q, p.k, p.v, *idx), p.dout);
  };
  const double worst = check(problem, indices, grads, loss, 501);
  std::printf("[ gradcheck] reference L=3 p=2: worst relative error %.2e\n", worst);
}

}  // namespace
