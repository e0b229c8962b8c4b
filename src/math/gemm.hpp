// Row-major GEMM on the host (lighthouse_math: the CPU attention's block products, the trainer's
// matmuls, the benchmarks):
//   C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C
// with op(X) = X or X^T. OpenBLAS does the work when the build found it
// (LIGHTHOUSE_HAVE_OPENBLAS); otherwise a portable loop nest does (correct, slower).
// As in BLAS, beta == 0 means C is written without being read (it may hold garbage or NaN).
//
// Call gemm() from inside an OpenMP parallel region only while a SingleThreadedBlas guard is
// alive: BLAS's own thread pool must stay out of the way, and single-threaded block products are
// what makes the kernel's results independent of the thread count.
#pragma once

#include <cstdint>

namespace lighthouse::cpu {

enum class Op { kNone, kTranspose };

template <typename T>
void gemm(Op op_a, Op op_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
          std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc);

// The portable implementation, always compiled (the tests compare the two).
template <typename T>
void gemm_portable(Op op_a, Op op_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha,
                   const T* a, std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c,
                   std::int64_t ldc);

// True when gemm() runs on OpenBLAS.
bool gemm_uses_blas();

// Sets the BLAS library to one thread while any guard is alive and restores the previous count
// when the last one ends. Construct it on the calling thread, outside the parallel region: the
// setting is process-wide (a multithreaded BLAS call elsewhere in the process meanwhile runs on
// one thread).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;
};

}  // namespace lighthouse::cpu
