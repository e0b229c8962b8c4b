// gemm() (OpenBLAS when built with it) and gemm_portable() against a plain triple loop, for every
// combination of transposes, with padded leading dimensions, and BLAS's beta == 0 rule.
#include "math/gemm.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace lighthouse::cpu {
namespace {

using i64 = std::int64_t;

template <typename T>
using GemmFn = void (*)(Op, Op, i64, i64, i64, T, const T*, i64, const T*, i64, T, T*, i64);

template <typename T>
void check(GemmFn<T> fn, Op op_a, Op op_b, i64 m, i64 n, i64 k, T beta) {
  SCOPED_TRACE(testing::Message() << "op_a=" << static_cast<int>(op_a)
                                  << " op_b=" << static_cast<int>(op_b) << " m=" << m << " n=" << n
                                  << " k=" << k << " beta=" << beta);
  std::mt19937 rng(static_cast<unsigned>(m * 7 + n * 3 + k));
  std::uniform_real_distribution<double> u(-1, 1);
  // Stored shapes of A and B, with a few extra columns of padding each.
  const i64 a_rows = op_a == Op::kNone ? m : k, a_cols = op_a == Op::kNone ? k : m;
  const i64 b_rows = op_b == Op::kNone ? k : n, b_cols = op_b == Op::kNone ? n : k;
  const i64 lda = a_cols + 3, ldb = b_cols + 2, ldc = n + 1;
  std::vector<T> a(static_cast<std::size_t>(a_rows * lda)),
      b(static_cast<std::size_t>(b_rows * ldb));
  std::vector<T> c(static_cast<std::size_t>(m * ldc));
  for (T& x : a) x = static_cast<T>(u(rng));
  for (T& x : b) x = static_cast<T>(u(rng));
  // beta == 0 must not read C: NaN there must not leak into the result.
  for (T& x : c) x = beta == T(0) ? std::numeric_limits<T>::quiet_NaN() : static_cast<T>(u(rng));
  const std::vector<T> c0 = c;
  const T alpha = T(0.75);
  fn(op_a, op_b, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
  for (i64 i = 0; i < m; ++i) {
    for (i64 j = 0; j < ldc; ++j) {
      const auto idx = static_cast<std::size_t>(i * ldc + j);
      if (j >= n) {  // padding untouched
        EXPECT_TRUE(std::isnan(c0[idx]) ? std::isnan(c[idx]) : c[idx] == c0[idx]);
        continue;
      }
      double want = 0;
      for (i64 p = 0; p < k; ++p) {
        const double x = op_a == Op::kNone ? a[i * lda + p] : a[p * lda + i];
        const double y = op_b == Op::kNone ? b[p * ldb + j] : b[j * ldb + p];
        want += x * y;
      }
      want = alpha * want + (beta == T(0) ? 0.0 : beta * static_cast<double>(c0[idx]));
      ASSERT_NEAR(c[idx], want, tol * (1 + std::sqrt(static_cast<double>(k))))
          << "at (" << i << ", " << j << ")";
    }
  }
}

template <typename T>
void check_all(GemmFn<T> fn) {
  for (Op op_a : {Op::kNone, Op::kTranspose}) {
    for (Op op_b : {Op::kNone, Op::kTranspose}) {
      for (T beta : {T(0), T(1), T(-0.5)}) {
        check<T>(fn, op_a, op_b, 1, 1, 1, beta);
        check<T>(fn, op_a, op_b, 37, 300, 19, beta);  // n past the portable chunk of 256
        check<T>(fn, op_a, op_b, 64, 64, 128, beta);
      }
    }
  }
}

TEST(Gemm, FloatMatchesLoops) {
  check_all<float>(&gemm<float>);
}
TEST(Gemm, DoubleMatchesLoops) {
  check_all<double>(&gemm<double>);
}
TEST(Gemm, PortableFloatMatchesLoops) {
  check_all<float>(&gemm_portable<float>);
}
TEST(Gemm, PortableDoubleMatchesLoops) {
  check_all<double>(&gemm_portable<double>);
}

}  // namespace
}  // namespace lighthouse::cpu
