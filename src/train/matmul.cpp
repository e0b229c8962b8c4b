#include "train/matmul.hpp"

#include <chrono>

#include "cpu/gemm.hpp"

namespace lighthouse::train {

namespace {
MatmulStats g_stats;
}

template <typename T>
void matmul(Trans ta, Trans tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
            const T* b, T beta, T* c) {
  if (m == 0 || n == 0) return;
  const auto start = std::chrono::steady_clock::now();
  const cpu::Op op_a = ta == Trans::kYes ? cpu::Op::kTranspose : cpu::Op::kNone;
  const cpu::Op op_b = tb == Trans::kYes ? cpu::Op::kTranspose : cpu::Op::kNone;
  // Contiguous operands: the leading dimension is the stored row length.
  const std::int64_t lda = ta == Trans::kYes ? m : k;
  const std::int64_t ldb = tb == Trans::kYes ? k : n;
  cpu::gemm<T>(op_a, op_b, m, n, k, T(1), a, lda, b, ldb, beta, c, n);
  g_stats.seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  g_stats.flops += 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
}

MatmulStats matmul_stats() {
  return g_stats;
}
void reset_matmul_stats() {
  g_stats = {};
}

template void matmul<float>(Trans, Trans, std::int64_t, std::int64_t, std::int64_t, const float*,
                            const float*, float, float*);
template void matmul<double>(Trans, Trans, std::int64_t, std::int64_t, std::int64_t, const double*,
                             const double*, double, double*);

}  // namespace lighthouse::train
