#include "math/gemm.hpp"

#include <algorithm>
#include <array>
#include <mutex>

#if defined(LIGHTHOUSE_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace lighthouse::cpu {

namespace {

// Element (row, col) of op(X) for a row-major X with leading dimension ld.
template <typename T>
inline const T& at(const T* x, std::int64_t ld, Op op, std::int64_t row, std::int64_t col) {
  return op == Op::kNone ? x[row * ld + col] : x[col * ld + row];
}

}  // namespace

template <typename T>
void gemm_portable(Op op_a, Op op_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha,
                   const T* a, std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c,
                   std::int64_t ldc) {
  // One row of C at a time, in column chunks that fit a stack buffer; the inner loop runs along
  // a row of op(B), which is contiguous (and vectorises) when B is not transposed.
  constexpr std::int64_t kChunk = 256;
  std::array<T, kChunk> acc;
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j0 = 0; j0 < n; j0 += kChunk) {
      const std::int64_t nj = std::min(kChunk, n - j0);
      std::fill_n(acc.begin(), nj, T(0));
      for (std::int64_t p = 0; p < k; ++p) {
        const T aip = at(a, lda, op_a, i, p);
        if (op_b == Op::kNone) {
          const T* brow = b + p * ldb + j0;
          for (std::int64_t j = 0; j < nj; ++j) acc[j] += aip * brow[j];
        } else {
          const T* bcol = b + j0 * ldb + p;
          for (std::int64_t j = 0; j < nj; ++j) acc[j] += aip * bcol[j * ldb];
        }
      }
      T* crow = c + i * ldc + j0;
      if (beta == T(0)) {
        for (std::int64_t j = 0; j < nj; ++j) crow[j] = alpha * acc[j];
      } else {
        for (std::int64_t j = 0; j < nj; ++j) crow[j] = alpha * acc[j] + beta * crow[j];
      }
    }
  }
}

#if defined(LIGHTHOUSE_HAVE_OPENBLAS)

namespace {
CBLAS_TRANSPOSE to_cblas(Op op) {
  return op == Op::kNone ? CblasNoTrans : CblasTrans;
}
}  // namespace

template <>
void gemm<float>(Op op_a, Op op_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                 const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
                 float* c, std::int64_t ldc) {
  cblas_sgemm(CblasRowMajor, to_cblas(op_a), to_cblas(op_b), static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda),
              b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

template <>
void gemm<double>(Op op_a, Op op_b, std::int64_t m, std::int64_t n, std::int64_t k, double alpha,
                  const double* a, std::int64_t lda, const double* b, std::int64_t ldb, double beta,
                  double* c, std::int64_t ldc) {
  cblas_dgemm(CblasRowMajor, to_cblas(op_a), to_cblas(op_b), static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda),
              b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

bool gemm_uses_blas() {
  return true;
}

namespace {
// The BLAS thread count is process-wide: guards alive at the same time (kernels called from
// several threads at once) share one save/restore, so none restores while another still runs.
std::mutex blas_threads_mutex;
int blas_guards = 0;
int blas_threads_saved = 1;
}  // namespace

SingleThreadedBlas::SingleThreadedBlas() {
  const std::lock_guard<std::mutex> lock(blas_threads_mutex);
  if (blas_guards++ == 0) {
    blas_threads_saved = openblas_get_num_threads();
    if (blas_threads_saved != 1) openblas_set_num_threads(1);
  }
}

SingleThreadedBlas::~SingleThreadedBlas() {
  const std::lock_guard<std::mutex> lock(blas_threads_mutex);
  if (--blas_guards == 0 && blas_threads_saved != 1) openblas_set_num_threads(blas_threads_saved);
}

#else

template <typename T>
void gemm(Op op_a, Op op_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
          std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  gemm_portable(op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template void gemm<float>(Op, Op, std::int64_t, std::int64_t, std::int64_t, float, const float*,
                          std::int64_t, const float*, std::int64_t, float, float*, std::int64_t);
template void gemm<double>(Op, Op, std::int64_t, std::int64_t, std::int64_t, double, const double*,
                           std::int64_t, const double*, std::int64_t, double, double*,
                           std::int64_t);

bool gemm_uses_blas() {
  return false;
}

SingleThreadedBlas::SingleThreadedBlas() = default;
SingleThreadedBlas::~SingleThreadedBlas() = default;

#endif

template void gemm_portable<float>(Op, Op, std::int64_t, std::int64_t, std::int64_t, float,
                                   const float*, std::int64_t, const float*, std::int64_t, float,
                                   float*, std::int64_t);
template void gemm_portable<double>(Op, Op, std::int64_t, std::int64_t, std::int64_t, double,
                                    const double*, std::int64_t, const double*, std::int64_t,
                                    double, double*, std::int64_t);

}  // namespace lighthouse::cpu
