#include "train/matmul.hpp"

#include <algorithm>
#include <chrono>

#include "math/gemm.hpp"

namespace lighthouse::train {

namespace {

// Per thread: context-parallel ranks are threads of one process, each timing its own products
// (OpenMP's workers never touch it; the calling thread adds after the parallel loop).
thread_local MatmulStats g_stats;

// The output is cut into a grid of tiles that depends only on the shape, each tile one
// single-threaded BLAS call over the whole k: every element is summed in the same order whatever
// the thread count, so the results do not depend on it.
//  - Tall outputs (the activations, m = batch * seq rows): bands of about kBandRows full rows;
//    the weight matrix B is small and re-packed per band.
//  - Short outputs (weight gradients, m and n = model widths, k = tokens): a grid of about
//    kGridRows x kGridCols tiles, so that two or more threads have work.
constexpr std::int64_t kTallRows = 1024;
constexpr std::int64_t kBandRows = 256;
constexpr std::int64_t kGridRows = 64, kGridCols = 128;
// Below this many multiply-adds a product runs as one tile on the calling thread.
constexpr double kSerialFlops = 2.0e6;

// [0, n) split into `parts` near-equal ranges: range i starts at split(n, parts, i).
std::int64_t split(std::int64_t n, std::int64_t parts, std::int64_t i) {
  return n * i / parts;
}

std::int64_t parts_of(std::int64_t n, std::int64_t size) {
  return std::max<std::int64_t>(1, (n + size / 2) / size);
}

}  // namespace

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
  const double flops =
      2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);

  std::int64_t row_parts = 1, col_parts = 1;
  if (flops >= kSerialFlops) {
    if (m >= kTallRows) {
      row_parts = parts_of(m, kBandRows);
    } else {
      row_parts = parts_of(m, kGridRows);
      col_parts = parts_of(n, kGridCols);
    }
  }
  // op(A) rows [i0, i1) and op(B) columns [j0, j1) of one tile.
  auto tile = [&](std::int64_t t) {
    const std::int64_t r = t / col_parts, q = t % col_parts;
    const std::int64_t i0 = split(m, row_parts, r), i1 = split(m, row_parts, r + 1);
    const std::int64_t j0 = split(n, col_parts, q), j1 = split(n, col_parts, q + 1);
    const T* at = ta == Trans::kYes ? a + i0 : a + i0 * lda;
    const T* bt = tb == Trans::kYes ? b + j0 * ldb : b + j0;
    cpu::gemm<T>(op_a, op_b, i1 - i0, j1 - j0, k, T(1), at, lda, bt, ldb, beta, c + i0 * n + j0, n);
  };
  // One pool of threads for the whole trainer: BLAS runs single-threaded inside OpenMP's
  // workers, so its own threads never compete with OpenMP's for the cores.
  const cpu::SingleThreadedBlas single;
  const std::int64_t tiles = row_parts * col_parts;
  if (tiles == 1) {
    tile(0);
  } else {
#pragma omp parallel for schedule(dynamic)
    for (std::int64_t t = 0; t < tiles; ++t) tile(t);
  }
  g_stats.seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  g_stats.flops += flops;
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
