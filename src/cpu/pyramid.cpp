#include "cpu/pyramid.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/dtype_dispatch.hpp"
#include "cpu/parallel.hpp"

namespace lighthouse::cpu {

namespace {

template <typename T>
void level_scores_t(const Plan& plan, const TensorView& q, const TensorView& k, float* sq,
                    float* sk, int threads) {
  const std::int64_t B = plan.batch, H = plan.heads, N = plan.seq, D = plan.head_dim;
  const std::int64_t P = plan.pyramid_size;
  // Level 1: the token norms.
  parallel_chunks(B * H, N, kTokenGrain, 0, threads,
                  [&](std::int64_t bh, std::int64_t begin, std::int64_t end, auto&) {
                    const std::int64_t b = bh / H, h = bh % H;
                    for (std::int64_t n = begin; n < end; ++n) {
                      sq[bh * P + n] = token_score(row_ptr<const T>(q, b, n, h), D);
                      sk[bh * P + n] = token_score(row_ptr<const T>(k, b, n, h), D);
                    }
                  });
  // Coarser levels: a block's max is the max of its p children's maxima.
  const std::int64_t p = plan.config.pool;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t bh = 0; bh < B * H; ++bh) {
    for (std::size_t l = 1; l < plan.size.size(); ++l) {
      for (float* s : {sq + bh * P, sk + bh * P}) {
        const float* child = s + plan.offset[l - 1];
        float* parent = s + plan.offset[l];
        for (std::int64_t i = 0; i < plan.size[l]; ++i) {
          float m = child[i * p];
          for (std::int64_t j = 1; j < p; ++j) m = std::max(m, child[i * p + j]);
          parent[i] = m;
        }
      }
    }
  }
}

template <typename T>
void gather_rows_t(const Plan& plan, const TensorView& x, const std::int32_t* indices, T* dst,
                   int threads) {
  const std::int64_t B = plan.batch, H = plan.heads, S = plan.S, D = plan.head_dim;
  parallel_chunks(
      B * H, S, kRowGrain, D, threads,
      [&](std::int64_t bh, std::int64_t begin, std::int64_t end, std::vector<double>& acc) {
        const std::int64_t b = bh / H, h = bh % H;
        for (std::int64_t s = begin; s < end; ++s) {
          const std::int64_t idx = indices[bh * S + s];
          const int l = level_of(plan, idx);
          const std::int64_t block = plan.block[l];
          const std::int64_t first = (idx - plan.offset[l]) * block;
          T* out = dst + (bh * S + s) * D;
          if (block == 1) {
            std::copy_n(row_ptr<const T>(x, b, first, h), D, out);
            continue;
          }
          std::fill(acc.begin(), acc.end(), 0.0);
          for (std::int64_t n = first; n < first + block; ++n) {
            const T* row = row_ptr<const T>(x, b, n, h);
            for (std::int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(row[d]);
          }
          const double inv = 1.0 / static_cast<double>(block);  // exact: block is a power of two
          for (std::int64_t d = 0; d < D; ++d) out[d] = static_cast<T>(acc[d] * inv);
        }
      });
}

template <typename T>
void spread_rows_t(const Plan& plan, const T* grad_sel, const std::int32_t* position,
                   const TensorView& dx, int threads) {
  const std::int64_t B = plan.batch, H = plan.heads, N = plan.seq, D = plan.head_dim;
  const std::int64_t S = plan.S, P = plan.pyramid_size;
  const std::size_t L = plan.size.size();
  parallel_chunks(
      B * H, N, kTokenGrain, D, threads,
      [&](std::int64_t bh, std::int64_t begin, std::int64_t end, std::vector<double>& acc) {
        const std::int64_t b = bh / H, h = bh % H;
        const std::int32_t* pos = position + bh * P;
        const T* g = grad_sel + bh * S * D;
        for (std::int64_t t = begin; t < end; ++t) {
          std::fill(acc.begin(), acc.end(), 0.0);
          for (std::size_t l = 0; l < L; ++l) {  // fixed order: fine to coarse
            const std::int32_t s = pos[plan.offset[l] + t / plan.block[l]];
            if (s < 0) continue;
            const double inv = 1.0 / static_cast<double>(plan.block[l]);
            const T* row = g + s * D;
            for (std::int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(row[d]) * inv;
          }
          T* out = row_ptr<T>(dx, b, t, h);
          for (std::int64_t d = 0; d < D; ++d) out[d] = static_cast<T>(acc[d]);
        }
      });
}

}  // namespace

template <typename T>
float token_score(const T* row, std::int64_t dim) {
  // Chunk sums (d order, from 0), zero-padded to a power-of-two count, then added pairwise,
  // neighbours first. `partial` holds up to 64 chunks (dim <= 512) without allocating.
  constexpr std::int64_t kChunk = kScoreChunk;
  const std::int64_t chunks = (dim + kChunk - 1) / kChunk;
  std::int64_t width = 1;
  while (width < chunks) width *= 2;
  double local[64];
  std::vector<double> heap;
  double* partial = local;
  if (width > 64) {
    heap.resize(static_cast<std::size_t>(width));
    partial = heap.data();
  }
  for (std::int64_t c = 0; c < width; ++c) {
    double sum = 0;
    for (std::int64_t d = c * kChunk; d < std::min(dim, (c + 1) * kChunk); ++d) {
      const double x = static_cast<double>(row[d]);
      sum += x * x;
    }
    partial[c] = sum;
  }
  for (std::int64_t step = 1; step < width; step *= 2) {
    for (std::int64_t c = 0; c + step < width; c += 2 * step) partial[c] += partial[c + step];
  }
  const float s = static_cast<float>(std::sqrt(partial[0]));
  return std::isnan(s) ? -std::numeric_limits<float>::infinity() : s;
}
template float token_score<float>(const float*, std::int64_t);
template float token_score<double>(const double*, std::int64_t);

void level_scores(const Plan& plan, const TensorView& q, const TensorView& k, float* sq, float* sk,
                  int threads) {
  dispatch_float(q.dtype,
                 [&](auto zero) { level_scores_t<decltype(zero)>(plan, q, k, sq, sk, threads); });
}

void gather_rows(const Plan& plan, const TensorView& x, const std::int32_t* indices, void* dst,
                 int threads) {
  dispatch_float(x.dtype, [&](auto zero) {
    using T = decltype(zero);
    gather_rows_t<T>(plan, x, indices, static_cast<T*>(dst), threads);
  });
}

void spread_rows(const Plan& plan, const void* grad_sel, const std::int32_t* position,
                 const TensorView& dx, int threads) {
  dispatch_float(dx.dtype, [&](auto zero) {
    using T = decltype(zero);
    spread_rows_t<T>(plan, static_cast<const T*>(grad_sel), position, dx, threads);
  });
}

}  // namespace lighthouse::cpu
