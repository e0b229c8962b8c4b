#include "cpu/pyramid.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <span>

#include "cpu/attention.hpp"
#include "cpu/dtype_dispatch.hpp"
#include "cpu/parallel.hpp"

namespace lighthouse::cpu {

namespace {

// The dilated scorer (pyramid.hpp). The subsequences are copied into contiguous [n, D] blocks,
// one per (b, h, j), so that the attention stage reads them as ordinary heads.
template <typename T>
void dilated_token_scores_t(const Plan& plan, const TensorView& q, const TensorView& k,
                            const TensorView& v, float* sq, float* sk, std::int64_t stride,
                            int threads) {
  const std::int64_t B = plan.batch, H = plan.heads, N = plan.seq, D = plan.head_dim;
  const std::int64_t dil = plan.config.dilation, n = N / dil;
  const std::int64_t problems = B * H * dil;  // (b, h, j), j the residue of the subsequence
  const auto rows = static_cast<std::size_t>(B * H * N * D);
  Buffer<T> xq(rows), xk(rows), xv(rows), o(rows), lse(static_cast<std::size_t>(B * H * N));
  // Row m of problem (bh, j) is token m * dil + j.
  parallel_chunks(B * H, N, kTokenGrain, 0, threads,
                  [&](std::int64_t bh, std::int64_t begin, std::int64_t end, auto&) {
                    const std::int64_t b = bh / H, h = bh % H;
                    for (std::int64_t t = begin; t < end; ++t) {
                      const std::int64_t row = (bh * dil + t % dil) * n + t / dil;
                      std::copy_n(row_ptr<const T>(q, b, t, h), D, xq.data() + row * D);
                      std::copy_n(row_ptr<const T>(k, b, t, h), D, xk.data() + row * D);
                      std::copy_n(row_ptr<const T>(v, b, t, h), D, xv.data() + row * D);
                    }
                  });
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(D)));
  std::vector<AttentionHead<T>> heads(static_cast<std::size_t>(problems));
  // Attn(Q, K, V) gives the query scores, Attn(K, Q, V) (queries and keys swapped) the key ones.
  for (const bool swapped : {false, true}) {
    for (std::int64_t w = 0; w < problems; ++w) {
      const std::int64_t off = w * n * D;
      heads[w] = {(swapped ? xk : xq).data() + off, (swapped ? xq : xk).data() + off,
                  xv.data() + off, o.data() + off, lse.data() + w * n};
    }
    causal_attention_forward<T>(std::span<const AttentionHead<T>>(heads), n, D, D, scale, threads);
    float* score = swapped ? sk : sq;
    parallel_chunks(B * H, N, kTokenGrain, 0, threads,
                    [&](std::int64_t bh, std::int64_t begin, std::int64_t end, auto&) {
                      for (std::int64_t t = begin; t < end; ++t) {
                        const std::int64_t row = (bh * dil + t % dil) * n + t / dil;
                        score[bh * stride + t] = token_score(o.data() + row * D, D);
                      }
                    });
  }
}

template <typename T>
void level_scores_t(const Plan& plan, const TensorView& q, const TensorView& k, const TensorView& v,
                    float* sq, float* sk, int threads) {
  const std::int64_t B = plan.batch, Hkv = plan.kv_heads, N = plan.seq, D = plan.head_dim;
  const std::int64_t P = plan.pyramid_size, G = plan.group();
  // Level 1: the token scores.
  if (plan.config.scorer == Scorer::kDilated) {
    dilated_token_scores_t<T>(plan, q, k, v, sq, sk, P, threads);
  } else {
    parallel_chunks(B * Hkv, N, kTokenGrain, 0, threads,
                    [&](std::int64_t bg, std::int64_t begin, std::int64_t end, auto&) {
                      const std::int64_t b = bg / Hkv, g = bg % Hkv;
                      for (std::int64_t n = begin; n < end; ++n) {
                        float query = token_score(row_ptr<const T>(q, b, n, g * G), D);
                        for (std::int64_t i = 1; i < G; ++i) {
                          query =
                              std::max(query, token_score(row_ptr<const T>(q, b, n, g * G + i), D));
                        }
                        sq[bg * P + n] = query;
                        sk[bg * P + n] = token_score(row_ptr<const T>(k, b, n, g), D);
                      }
                    });
  }
  // Coarser levels: a block's max is the max of its p children's maxima.
  const std::int64_t p = plan.config.pool;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t bh = 0; bh < B * Hkv; ++bh) {
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

void level_scores(const Plan& plan, const TensorView& q, const TensorView& k, const TensorView& v,
                  float* sq, float* sk, int threads) {
  dispatch_float(
      q.dtype, [&](auto zero) { level_scores_t<decltype(zero)>(plan, q, k, v, sq, sk, threads); });
}

void dilated_token_scores(const Plan& plan, const TensorView& q, const TensorView& k,
                          const TensorView& v, float* sq, float* sk, std::int64_t stride,
                          int threads) {
  dispatch_float(q.dtype, [&](auto zero) {
    dilated_token_scores_t<decltype(zero)>(plan, q, k, v, sq, sk, stride, threads);
  });
}

}  // namespace lighthouse::cpu
