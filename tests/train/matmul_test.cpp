// The trainer's matmul: every transpose combination against a plain triple loop, on shapes that
// run as one tile, as bands of rows and as a grid of tiles; and the same bits for any number of
// OpenMP threads (the tiling depends on the shape only).
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "train/matmul.hpp"
#include "train/rng.hpp"

namespace {

using lighthouse::train::matmul;
using lighthouse::train::Trans;

std::vector<float> random_matrix(std::int64_t n, std::uint64_t seed) {
  lighthouse::train::Rng rng(seed);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = static_cast<float>(rng.normal());
  return v;
}

struct Shape {
  std::int64_t m, n, k;
};

// C = op(A) op(B) + beta C in double, straight from the definition.
std::vector<double> reference(Trans ta, Trans tb, Shape s, const std::vector<float>& a,
                              const std::vector<float>& b, float beta,
                              const std::vector<float>& c) {
  std::vector<double> out(static_cast<std::size_t>(s.m * s.n));
  for (std::int64_t i = 0; i < s.m; ++i) {
    for (std::int64_t j = 0; j < s.n; ++j) {
      double acc = beta * static_cast<double>(c[static_cast<std::size_t>(i * s.n + j)]);
      for (std::int64_t p = 0; p < s.k; ++p) {
        const float x = ta == Trans::kYes ? a[static_cast<std::size_t>(p * s.m + i)]
                                          : a[static_cast<std::size_t>(i * s.k + p)];
        const float y = tb == Trans::kYes ? b[static_cast<std::size_t>(j * s.k + p)]
                                          : b[static_cast<std::size_t>(p * s.n + j)];
        acc += static_cast<double>(x) * y;
      }
      out[static_cast<std::size_t>(i * s.n + j)] = acc;
    }
  }
  return out;
}

std::vector<float> run(Trans ta, Trans tb, Shape s, const std::vector<float>& a,
                       const std::vector<float>& b, float beta, std::vector<float> c, int threads) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  matmul<float>(ta, tb, s.m, s.n, s.k, a.data(), b.data(), beta, c.data());
  omp_set_num_threads(saved);
  return c;
}

TEST(TrainMatmul, MatchesTheDefinitionAndIsIndependentOfTheThreadCount) {
  // One tile; bands of rows (m >= 1024); a grid (weight-gradient shapes: small m and n, long k).
  for (const Shape s : {Shape{7, 5, 3}, Shape{1100, 96, 40}, Shape{130, 300, 700}}) {
    for (const Trans ta : {Trans::kNo, Trans::kYes}) {
      for (const Trans tb : {Trans::kNo, Trans::kYes}) {
        const auto a = random_matrix(s.m * s.k, 1), b = random_matrix(s.k * s.n, 2);
        const auto c = random_matrix(s.m * s.n, 3);
        for (const float beta : {0.0f, 1.0f}) {
          const std::vector<float> one = run(ta, tb, s, a, b, beta, c, 1);
          const std::vector<double> want = reference(ta, tb, s, a, b, beta, c);
          double worst = 0;
          for (std::size_t i = 0; i < want.size(); ++i) {
            worst = std::max(worst, std::abs(one[i] - want[i]) / std::sqrt(double(s.k)));
          }
          EXPECT_LT(worst, 1e-5) << s.m << "x" << s.n << "x" << s.k;
          for (const int threads : {2, 3}) {
            EXPECT_EQ(run(ta, tb, s, a, b, beta, c, threads), one)
                << s.m << "x" << s.n << "x" << s.k << " on " << threads << " threads";
          }
        }
      }
    }
  }
}

}  // namespace
