// How a row-major product D = op(A) op(B) maps onto a column-major BLAS call such as cuBLASLt's.
// A row-major [r, c] matrix with leading dimension ld is the column-major [c, r] matrix with the
// same ld, so D^T = op(B)^T op(A)^T: the column-major call computes D^T (our D, as stored) with
// our B as its first operand and our A as its second, each transposed when ours is. Pure
// arithmetic, no CUDA: the CPU tests check it against a column-major reference product.
#pragma once

#include <cstdint>

#include "train/matmul.hpp"  // Trans

namespace lighthouse::train::cuda {

// A column-major matrix as stored (before its op is applied).
struct StoredMatrix {
  std::int64_t rows = 0, cols = 0, ld = 0;
};

struct ColumnMajorProduct {
  bool transpose_first = false, transpose_second = false;  // ops on the two operands
  std::int64_t m = 0, n = 0, k = 0;                        // the result is m x n
  StoredMatrix first, second, result;  // first = our B, second = our A, result = our D
};

// For row-major op(A) [m x k] (A stored [m, k], or [k, m] when ta), op(B) [k x n] (B stored
// [k, n], or [n, k] when tb) and D [m x n], with leading dimensions lda, ldb and ldd.
inline ColumnMajorProduct column_major(Trans ta, Trans tb, std::int64_t m, std::int64_t n,
                                       std::int64_t k, std::int64_t lda, std::int64_t ldb,
                                       std::int64_t ldd) {
  ColumnMajorProduct p;
  p.transpose_first = tb == Trans::kYes;
  p.transpose_second = ta == Trans::kYes;
  p.m = n;
  p.n = m;
  p.k = k;
  // Our B stored [k, n] row-major is column-major [n, k]; stored [n, k] it is [k, n].
  p.first = tb == Trans::kNo ? StoredMatrix{n, k, ldb} : StoredMatrix{k, n, ldb};
  // Our A stored [m, k] row-major is column-major [k, m]; stored [k, m] it is [m, k].
  p.second = ta == Trans::kNo ? StoredMatrix{k, m, lda} : StoredMatrix{m, k, lda};
  p.result = StoredMatrix{n, m, ldd};
  return p;
}

}  // namespace lighthouse::train::cuda
