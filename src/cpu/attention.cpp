#include "cpu/attention.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "lighthouse/error.hpp"
#include "math/fast_exp.hpp"
#include "math/gemm.hpp"

namespace lighthouse::cpu {

namespace {

using i64 = std::int64_t;

constexpr double kLog2e = 1.44269504088896340736;
constexpr double kLn2 = 0.69314718055994530942;

// Default block sizes, measured with bench/dense_attention_bench.cpp --sweep (and a round-robin
// sweep driver) on the 2-core AMD EPYC (Zen 4; OpenBLAS 0.3.21 picks its Cooperlake kernels),
// S = 8192, 4 heads, GFLOP per CPU-second (the machine was shared):
//   forward  D=64: 128x128 66, 256x256 72, 384x384 72, 512x512 72, 256x512 70, 256x128 71
//            D=128: 128x128 71, 256x256 80, 384x384 79;  D=32: 55, 57, 56
//   backward D=64: 64 48, 128 63-66, 192 67, 256 71-72, 384 73-74
//            D=128: 128 72, 256 80, 384 81;  D=32: 50, 59, 57
// (single-core OpenBLAS SGEMM: ~101-105). OpenBLAS packs both operands of every block product;
// bigger blocks amortise that, and 256 keeps the backward's two 256x256 scratch matrices inside
// the 1 MiB L2 while wasting only half a block per row on the diagonal.
constexpr AttentionTiles kDefaultTiles{.forward_q = 256, .forward_k = 256, .backward = 256};

// Row-wise reductions use a fixed number of independent partial results, combined in a fixed
// order: the compiler vectorises the lanes without reassociating anything, so the result does
// not depend on the data's alignment (the compiler may peel a different number of leading
// elements for differently aligned rows).
constexpr i64 kLanes = 16;

template <typename T>
T combine_lanes(T (&part)[kLanes]) {
  for (i64 width = kLanes / 2; width > 0; width /= 2) {
    for (i64 l = 0; l < width; ++l) part[l] += part[l + width];
  }
  return part[0];
}

template <typename T>
T row_max(const T* x, i64 n) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (i64 j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;  // max is exact: any order is the same
  return m;
}

// x[j] <- 2^(x[j] - shift) for j < n; returns the sum of the new values.
template <typename T>
T exp2_shift_sum(T* x, i64 n, T shift) {
  T part[kLanes] = {};
  i64 j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (i64 l = 0; l < kLanes; ++l) {
      const T e = fast_exp2(x[j + l] - shift);
      x[j + l] = e;
      part[l] += e;
    }
  }
  for (i64 l = 0; j + l < n; ++l) {
    const T e = fast_exp2(x[j + l] - shift);
    x[j + l] = e;
    part[l] += e;
  }
  return combine_lanes(part);
}

template <typename T>
T dot(const T* a, const T* b, i64 n) {
  T part[kLanes] = {};
  i64 j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (i64 l = 0; l < kLanes; ++l) part[l] += a[j + l] * b[j + l];
  }
  for (i64 l = 0; j + l < n; ++l) part[l] += a[j + l] * b[j + l];
  return combine_lanes(part);
}

inline i64 round_up(i64 x, i64 m) {
  return (x + m - 1) / m * m;
}

// Keys of the block starting at k0 that query row q may see (causal: key <= q), within `cols`.
inline i64 visible_keys(i64 q, i64 k0, i64 cols) {
  return std::clamp<i64>(q - k0 + 1, 0, cols);
}

// Scratch for all threads in one 64-byte aligned allocation, made on the calling thread (so an
// allocation failure throws there, not inside the parallel region). Each thread's slice is a
// multiple of 64 bytes, so all slices share one alignment.
template <typename T>
class ThreadScratch {
 public:
  ThreadScratch(int threads, i64 per_thread)
      : per_thread_(round_up(per_thread, 64 / static_cast<i64>(sizeof(T)))),
        data_(static_cast<T*>(::operator new[](
            static_cast<std::size_t>(per_thread_* threads) * sizeof(T), std::align_val_t(64)))) {}
  T* slice(int thread) const { return data_.get() + per_thread_ * thread; }

 private:
  struct AlignedDelete {
    void operator()(T* p) const { ::operator delete[](p, std::align_val_t(64)); }
  };
  i64 per_thread_;
  std::unique_ptr<T[], AlignedDelete> data_;
};

int resolve_threads(int threads) {
  return threads > 0 ? threads : omp_get_max_threads();
}

void check_shape(i64 S, i64 D, i64 ld) {
  constexpr i64 kBlasMax = std::numeric_limits<int>::max();
  if (S < 0) throw InvalidArgument("S", std::to_string(S), "must be >= 0");
  if (D < 1) throw InvalidArgument("D", std::to_string(D), "must be >= 1");
  if (ld < D) {
    throw InvalidArgument("ld", std::to_string(ld), "must be >= D (" + std::to_string(D) + ")");
  }
  if (ld > kBlasMax) {
    throw InvalidArgument("ld", std::to_string(ld), "must fit a 32-bit BLAS int");
  }
}

i64 resolve_tile(i64 value, i64 fallback, const char* name) {
  if (value < 0) {
    throw InvalidArgument(name, std::to_string(value), "must be >= 1, or 0 for the default");
  }
  return value == 0 ? fallback : value;
}

template <typename P>
void check_pointer(const P* p, std::size_t head, const char* field) {
  if (p == nullptr) {
    throw InvalidArgument("heads[" + std::to_string(head) + "]." + field, "null",
                          "must point to the head's data");
  }
}

// The pointers the forward reads and writes; the backward's heads carry them too.
template <typename Head>
void check_forward_pointers(const Head& h, std::size_t i) {
  check_pointer(h.q, i, "q");
  check_pointer(h.k, i, "k");
  check_pointer(h.v, i, "v");
  check_pointer(h.o, i, "o");
  check_pointer(h.lse, i, "lse");
}

// ---- forward --------------------------------------------------------------------------------

template <typename T>
struct ForwardScratch {
  T* s;    // [bq, ldS] logits, then probabilities of one key block
  T* acc;  // [bq, D] unnormalised output
  T* m;    // [bq] running max, in log2 units
  T* l;    // [bq] running sum of 2^(logit - m)
};

// One block of `rows` queries starting at q0 against all key blocks it can see.
template <typename T>
void forward_query_block(const AttentionHead<T>& h, i64 S, i64 D, i64 ld, T scale_log2, i64 q0,
                         i64 rows, i64 bk, i64 ldS, const ForwardScratch<T>& w) {
  std::fill_n(w.acc, rows * D, T(0));
  std::fill_n(w.m, rows, -std::numeric_limits<T>::infinity());
  std::fill_n(w.l, rows, T(0));
  const i64 q_last = q0 + rows - 1;
  for (i64 k0 = 0; k0 <= q_last; k0 += bk) {
    const i64 cols = std::min(bk, S - k0);
    // Logits in log2 units: the softmax then needs exp2 only, and lse converts back at the end.
    gemm<T>(Op::kNone, Op::kTranspose, rows, cols, D, scale_log2, h.q + q0 * ld, ld, h.k + k0 * ld,
            ld, T(0), w.s, ldS);
    for (i64 r = 0; r < rows; ++r) {
      T* sr = w.s + r * ldS;
      const i64 valid = visible_keys(q0 + r, k0, cols);  // < cols only on diagonal blocks
      std::fill(sr + valid, sr + cols, T(0));
      if (valid == 0) continue;
      const T m_new = std::max(w.m[r], row_max(sr, valid));
      // m is -inf before the first block; fast_exp2(-inf) is exactly 0, which zeroes l and acc.
      const T rescale = fast_exp2(w.m[r] - m_new);
      const T sum = exp2_shift_sum(sr, valid, m_new);
      w.l[r] = w.l[r] * rescale + sum;
      w.m[r] = m_new;
      if (rescale != T(1)) {
        T* ar = w.acc + r * D;
        for (i64 d = 0; d < D; ++d) ar[d] *= rescale;
      }
    }
    gemm<T>(Op::kNone, Op::kNone, rows, D, cols, T(1), w.s, ldS, h.v + k0 * ld, ld, T(1), w.acc, D);
  }
  for (i64 r = 0; r < rows; ++r) {
    const T* ar = w.acc + r * D;
    T* orow = h.o + (q0 + r) * ld;
    const T l = w.l[r];
    for (i64 d = 0; d < D; ++d) orow[d] = ar[d] / l;
    h.lse[q0 + r] = w.m[r] * static_cast<T>(kLn2) + std::log(l);
  }
}

// ---- backward -------------------------------------------------------------------------------

template <typename T>
struct BackwardScratch {
  T* p;      // [b, ldS] probabilities, recomputed from lse
  T* dp;     // [b, ldS] dO V^T, then dS = P * (dP - delta)
  T* delta;  // [b] rowsum(dO * O)
  T* lse2;   // [b] lse in log2 units
};

// Tile (query block at q0, key block at k0). `first` (the diagonal tile, processed before any
// other tile of its row or column) overwrites dq, dk, dv; later tiles accumulate into them.
template <typename T>
void backward_tile(const AttentionGradHead<T>& h, i64 D, i64 ld, T scale, T scale_log2, i64 q0,
                   i64 rows, i64 k0, i64 cols, i64 ldS, bool first, const BackwardScratch<T>& w) {
  for (i64 r = 0; r < rows; ++r) {
    const i64 i = q0 + r;
    w.delta[r] = dot(h.dout + i * ld, h.o + i * ld, D);
    w.lse2[r] = h.lse[i] * static_cast<T>(kLog2e);
  }
  const T* q = h.q + q0 * ld;
  const T* k = h.k + k0 * ld;
  const T* v = h.v + k0 * ld;
  const T* dout = h.dout + q0 * ld;
  gemm<T>(Op::kNone, Op::kTranspose, rows, cols, D, scale_log2, q, ld, k, ld, T(0), w.p, ldS);
  gemm<T>(Op::kNone, Op::kTranspose, rows, cols, D, T(1), dout, ld, v, ld, T(0), w.dp, ldS);
  // One pass: P = 2^(logit - lse) (0 where masked), dS = P * (dP - delta).
  for (i64 r = 0; r < rows; ++r) {
    T* pr = w.p + r * ldS;
    T* dr = w.dp + r * ldS;
    const i64 valid = visible_keys(q0 + r, k0, cols);
    const T shift = w.lse2[r];
    const T delta = w.delta[r];
    for (i64 j = 0; j < valid; ++j) {
      const T p = fast_exp2(pr[j] - shift);
      pr[j] = p;
      dr[j] = p * (dr[j] - delta);
    }
    std::fill(pr + valid, pr + cols, T(0));
    std::fill(dr + valid, dr + cols, T(0));
  }
  const T beta = first ? T(0) : T(1);
  gemm<T>(Op::kTranspose, Op::kNone, cols, D, rows, T(1), w.p, ldS, dout, ld, beta, h.dv + k0 * ld,
          ld);
  gemm<T>(Op::kNone, Op::kNone, rows, D, cols, scale, w.dp, ldS, k, ld, beta, h.dq + q0 * ld, ld);
  gemm<T>(Op::kTranspose, Op::kNone, cols, D, rows, scale, w.dp, ldS, q, ld, beta, h.dk + k0 * ld,
          ld);
}

}  // namespace

template <typename T>
void causal_attention_forward(std::span<const AttentionHead<T>> heads, i64 S, i64 D, i64 ld,
                              T scale, int threads, AttentionTiles tiles) {
  check_shape(S, D, ld);
  const i64 bq = resolve_tile(tiles.forward_q, kDefaultTiles.forward_q, "tiles.forward_q");
  const i64 bk = resolve_tile(tiles.forward_k, kDefaultTiles.forward_k, "tiles.forward_k");
  for (std::size_t i = 0; i < heads.size(); ++i) check_forward_pointers(heads[i], i);
  if (S == 0 || heads.empty()) return;

  const int nt = resolve_threads(threads);
  const i64 ldS = round_up(bk, kLanes);
  const i64 s_size = bq * ldS, acc_size = round_up(bq * D, kLanes);
  const i64 vec_size = round_up(bq, kLanes);
  ThreadScratch<T> scratch(nt, s_size + acc_size + 2 * vec_size);
  const i64 n_heads = static_cast<i64>(heads.size());
  const i64 n_blocks = (S + bq - 1) / bq;
  const T scale_log2 = scale * static_cast<T>(kLog2e);
  SingleThreadedBlas blas_guard;

#pragma omp parallel num_threads(nt)
  {
    T* base = scratch.slice(omp_get_thread_num());
    const ForwardScratch<T> w{base, base + s_size, base + s_size + acc_size,
                              base + s_size + acc_size + vec_size};
    // Costliest blocks (last queries, most keys) first, for load balance.
#pragma omp for schedule(dynamic, 1)
    for (i64 t = 0; t < n_heads * n_blocks; ++t) {
      const i64 block = n_blocks - 1 - t / n_heads;
      const i64 q0 = block * bq;
      forward_query_block(heads[t % n_heads], S, D, ld, scale_log2, q0, std::min(bq, S - q0), bk,
                          ldS, w);
    }
  }
}

template <typename T>
void causal_attention_backward(std::span<const AttentionGradHead<T>> heads, i64 S, i64 D, i64 ld,
                               T scale, int threads, AttentionTiles tiles) {
  check_shape(S, D, ld);
  const i64 b = resolve_tile(tiles.backward, kDefaultTiles.backward, "tiles.backward");
  for (std::size_t i = 0; i < heads.size(); ++i) {
    check_forward_pointers(heads[i], i);
    check_pointer(heads[i].dout, i, "dout");
    check_pointer(heads[i].dq, i, "dq");
    check_pointer(heads[i].dk, i, "dk");
    check_pointer(heads[i].dv, i, "dv");
  }
  if (S == 0 || heads.empty()) return;

  const int nt = resolve_threads(threads);
  const i64 ldS = round_up(b, kLanes);
  const i64 mat_size = b * ldS, vec_size = round_up(b, kLanes);
  ThreadScratch<T> scratch(nt, 2 * mat_size + 2 * vec_size);
  const i64 n_heads = static_cast<i64>(heads.size());
  const i64 n_blocks = (S + b - 1) / b;
  const T scale_log2 = scale * static_cast<T>(kLog2e);
  SingleThreadedBlas blas_guard;

  // Tile (qi, kj) adds to dQ of block qi and to dK, dV of block kj. Each output block gets one
  // fixed order of additions - the order the tiles are created in, diagonal by diagonal:
  // dQ_i over kj = i, i-1, ..., 0 and dK_j, dV_j over qi = j, j+1, ... - because the tasks
  // declare the blocks they update as dependencies. So the result is the same for any thread
  // count, without atomics or a second pass, and no thread ever waits at a global barrier (a
  // thread that loses its core to another process holds up only the tiles that need its output).
  std::vector<char> q_dep(static_cast<std::size_t>(n_heads * n_blocks));
  std::vector<char> k_dep(static_cast<std::size_t>(n_heads * n_blocks));
  char* const qd = q_dep.data();
  char* const kd = k_dep.data();
#pragma omp parallel num_threads(nt)
#pragma omp single
  for (i64 d = 0; d < n_blocks; ++d) {
    for (i64 kj = 0; kj + d < n_blocks; ++kj) {
      for (i64 hi = 0; hi < n_heads; ++hi) {
        const i64 qi = kj + d;
#pragma omp task depend(inout : qd[hi * n_blocks + qi]) depend(inout : kd[hi * n_blocks + kj])
        {
          // Tasks are tied and a tile has no scheduling point, so the thread's scratch is free.
          T* base = scratch.slice(omp_get_thread_num());
          const BackwardScratch<T> w{base, base + mat_size, base + 2 * mat_size,
                                     base + 2 * mat_size + vec_size};
          const i64 q0 = qi * b, k0 = kj * b;
          backward_tile(heads[static_cast<std::size_t>(hi)], D, ld, scale, scale_log2, q0,
                        std::min(b, S - q0), k0, std::min(b, S - k0), ldS, d == 0, w);
        }
      }
    }
  }
}

template <typename T>
void causal_attention_forward(std::span<const AttentionHead<T>> heads, i64 S, i64 D, i64 ld,
                              T scale, int threads) {
  causal_attention_forward(heads, S, D, ld, scale, threads, AttentionTiles{});
}

template <typename T>
void causal_attention_backward(std::span<const AttentionGradHead<T>> heads, i64 S, i64 D, i64 ld,
                               T scale, int threads) {
  causal_attention_backward(heads, S, D, ld, scale, threads, AttentionTiles{});
}

#define LIGHTHOUSE_INSTANTIATE(T)                                                                  \
  template void causal_attention_forward<T>(std::span<const AttentionHead<T>>, i64, i64, i64, T,   \
                                            int);                                                  \
  template void causal_attention_forward<T>(std::span<const AttentionHead<T>>, i64, i64, i64, T,   \
                                            int, AttentionTiles);                                  \
  template void causal_attention_backward<T>(std::span<const AttentionGradHead<T>>, i64, i64, i64, \
                                             T, int);                                              \
  template void causal_attention_backward<T>(std::span<const AttentionGradHead<T>>, i64, i64, i64, \
                                             T, int, AttentionTiles);
LIGHTHOUSE_INSTANTIATE(float)
LIGHTHOUSE_INSTANTIATE(double)
#undef LIGHTHOUSE_INSTANTIATE

}  // namespace lighthouse::cpu
