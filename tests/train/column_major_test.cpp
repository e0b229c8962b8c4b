// The row-major -> column-major mapping of the CUDA model's cuBLASLt products
// (src/train/cuda/column_major.hpp), checked on the CPU: a column-major product computed exactly
// as cuBLASLt defines it, on the operands and layouts the mapping gives, must leave the row-major
// product in D's memory, for every transpose pair and padded leading dimensions; and every stored
// matrix must satisfy cuBLASLt's ld >= rows.
#include <gtest/gtest.h>

#include <vector>

#include "train/cuda/column_major.hpp"
#include "train/rng.hpp"

namespace {

using lighthouse::train::Trans;
using lighthouse::train::cuda::column_major;
using lighthouse::train::cuda::StoredMatrix;

// Element (i, j) of op(X) for a column-major X stored as `s`.
double element(const std::vector<double>& x, const StoredMatrix& s, bool transpose, std::int64_t i,
               std::int64_t j) {
  return transpose ? x[static_cast<std::size_t>(j + i * s.ld)]
                   : x[static_cast<std::size_t>(i + j * s.ld)];
}

TEST(TrainCudaColumnMajor, ColumnMajorCallComputesTheRowMajorProduct) {
  const std::int64_t m = 5, n = 3, k = 4, pad = 2;
  lighthouse::train::Rng rng(1);
  for (const Trans ta : {Trans::kNo, Trans::kYes}) {
    for (const Trans tb : {Trans::kNo, Trans::kYes}) {
      // Row-major storage: A [m, k] or [k, m], B [k, n] or [n, k], D [m, n], padded rows.
      const std::int64_t a_rows = ta == Trans::kNo ? m : k, a_cols = ta == Trans::kNo ? k : m;
      const std::int64_t b_rows = tb == Trans::kNo ? k : n, b_cols = tb == Trans::kNo ? n : k;
      const std::int64_t lda = a_cols + pad, ldb = b_cols + pad, ldd = n + pad;
      std::vector<double> a(static_cast<std::size_t>(a_rows * lda));
      std::vector<double> b(static_cast<std::size_t>(b_rows * ldb));
      for (double& v : a) v = rng.normal();
      for (double& v : b) v = rng.normal();
      auto op_a = [&](std::int64_t i, std::int64_t p) {
        return ta == Trans::kNo ? a[static_cast<std::size_t>(i * lda + p)]
                                : a[static_cast<std::size_t>(p * lda + i)];
      };
      auto op_b = [&](std::int64_t p, std::int64_t j) {
        return tb == Trans::kNo ? b[static_cast<std::size_t>(p * ldb + j)]
                                : b[static_cast<std::size_t>(j * ldb + p)];
      };

      const auto cm = column_major(ta, tb, m, n, k, lda, ldb, ldd);
      // Shapes as cuBLASLt checks them: op(first) is m x k, op(second) k x n, result m x n.
      const auto op_rows = [](const StoredMatrix& s, bool t) { return t ? s.cols : s.rows; };
      const auto op_cols = [](const StoredMatrix& s, bool t) { return t ? s.rows : s.cols; };
      EXPECT_EQ(op_rows(cm.first, cm.transpose_first), cm.m);
      EXPECT_EQ(op_cols(cm.first, cm.transpose_first), cm.k);
      EXPECT_EQ(op_rows(cm.second, cm.transpose_second), cm.k);
      EXPECT_EQ(op_cols(cm.second, cm.transpose_second), cm.n);
      EXPECT_EQ(cm.result.rows, cm.m);
      EXPECT_EQ(cm.result.cols, cm.n);
      for (const StoredMatrix& s : {cm.first, cm.second, cm.result}) EXPECT_GE(s.ld, s.rows);

      std::vector<double> d(static_cast<std::size_t>(m * ldd), 0.0);
      for (std::int64_t i = 0; i < cm.m; ++i) {
        for (std::int64_t j = 0; j < cm.n; ++j) {
          double s = 0;
          for (std::int64_t p = 0; p < cm.k; ++p) {
            s += element(b, cm.first, cm.transpose_first, i, p) *
                 element(a, cm.second, cm.transpose_second, p, j);
          }
          d[static_cast<std::size_t>(i + j * cm.result.ld)] = s;
        }
      }
      for (std::int64_t i = 0; i < m; ++i) {
        for (std::int64_t j = 0; j < n; ++j) {
          double want = 0;
          for (std::int64_t p = 0; p < k; ++p) want += op_a(i, p) * op_b(p, j);
          EXPECT_NEAR(d[static_cast<std::size_t>(i * ldd + j)], want, 1e-12)
              << "ta " << (ta == Trans::kYes) << " tb " << (tb == Trans::kYes) << " at " << i
              << ", " << j;
        }
      }
    }
  }
}

}  // namespace
