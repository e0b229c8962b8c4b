// Row-major matrix products for the trainer's layers:
//   C[m x n] = op(A)[m x k] * op(B)[k x n] + beta * C,   op(X) = X or X^T,
// on the library's CPU GEMM (OpenBLAS's sgemm/dgemm when the build found it), run single-threaded
// on tiles of C spread over OpenMP's threads: one pool of workers for the whole trainer, and the
// same bits for any thread count (the tiling depends on the shape only, see matmul.cpp).
// Every call is timed and its FLOPs counted, so the trainer can report the fraction of a step
// spent in matmuls and their achieved rate next to the machine's SGEMM rate.
#pragma once

#include <cstdint>

namespace lighthouse::train {

// Whether A or B enters the product transposed.
enum class Trans { kNo, kYes };

template <typename T>
void matmul(Trans ta, Trans tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
            const T* b, T beta, T* c);

// Totals over all matmul() calls since the last reset (process-wide; the trainer calls matmul
// from one thread only).
struct MatmulStats {
  double seconds = 0;
  double flops = 0;
};
MatmulStats matmul_stats();
void reset_matmul_stats();

}  // namespace lighthouse::train
