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

}  // namespace lighthouse::cpu
