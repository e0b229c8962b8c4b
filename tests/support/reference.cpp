#include "support/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

namespace lhtest {

namespace {

constexpr std::int64_t kTile = 128;  // T: entries kept per tile and level
constexpr std::int64_t kHalf = kTile / 2;

// The pyramid's layout: level l (0-based) has blocks of c = p^l tokens, N / c entries, and
// starts at `offset` in the pyramid index.
struct Geometry {
  std::int64_t L = 1, p = 2, N = 0, total = 0;
  std::vector<std::int64_t> block, size, offset;

  Geometry(const lighthouse::Config& config, std::int64_t tokens)
      : L(config.levels), p(config.pool), N(tokens) {
    if (L < 1 || p < 2) throw std::invalid_argument("reference: levels >= 1 and pool >= 2");
    std::int64_t c = 1;
    for (std::int64_t l = 0; l < L; ++l) {
      if (N % c != 0) throw std::invalid_argument("reference: N not divisible by p^(L-1)");
      block.push_back(c);
      size.push_back(N / c);
      offset.push_back(total);
      total += N / c;
      c *= p;
    }
  }

  // The (level, local index) of a pyramid index.
  std::pair<std::int64_t, std::int64_t> locate(std::int64_t index) const {
    for (std::int64_t l = L - 1; l >= 0; --l) {
      if (index >= offset[l]) return {l, index - offset[l]};
    }
    throw std::logic_error("reference: negative pyramid index");
  }

  // Tokens [first, last] that receive the output of entry i of level l.
  std::pair<std::int64_t, std::int64_t> scatter_range(std::int64_t l, std::int64_t i) const {
    const std::int64_t c = block[l];
    return {i * c + c - 1, std::min(i * c + 2 * c - 2, N - 1)};
  }
};

std::int64_t at(const Shape& s, std::int64_t b, std::int64_t n, std::int64_t h) {
  return ((b * s.N + n) * s.H + h) * s.D;
}

// Pyramid rows of one (batch, head) of x: [total, D], level l entry i = mean of its c tokens.
std::vector<double> pyramid(const Geometry& g, const Shape& s, const std::vector<double>& x,
                            std::int64_t b, std::int64_t h) {
  std::vector<double> rows(g.total * s.D, 0.0);
  for (std::int64_t l = 0; l < g.L; ++l) {
    const std::int64_t c = g.block[l];
    for (std::int64_t i = 0; i < g.size[l]; ++i) {
      double* dst = &rows[(g.offset[l] + i) * s.D];
      for (std::int64_t t = i * c; t < (i + 1) * c; ++t) {
        const double* src = &x[at(s, b, t, h)];
        for (std::int64_t d = 0; d < s.D; ++d) dst[d] += src[d];
      }
      for (std::int64_t d = 0; d < s.D; ++d) dst[d] /= static_cast<double>(c);
    }
  }
  return rows;
}

// Positions 0..n-1 of `candidates`, ordered by descending score; equal scores keep their
// candidate order (the spec allows any fixed tie rule; the library uses this one).
std::vector<std::int64_t> rank_by(const std::vector<std::int64_t>& positions,
                                  const std::vector<std::int64_t>& candidates,
                                  const std::vector<float>& score) {
  std::vector<std::int64_t> order = positions;
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return score[candidates[a]] > score[candidates[b]];
  });
  return order;
}

// The causal selection rule of one level (docs/SPEC.md), read literally: candidates in
// position order; a candidate's query (key) score is the max of the previous block's pooled
// score at its level and its first token's score; with r = n / 64 it is eligible by query score
// when that score is strictly above each of the r - 1 candidates' query scores just before it
// (fewer at the start), by key score likewise over r - 2; it is kept by query while fewer than 64
// were, else by key while fewer than 64 were, else when n - 128 candidates have been turned down
// already. Returns which candidate positions are kept.
std::vector<bool> keep_causal(const Geometry& g, std::int64_t l,
                              const std::vector<std::int64_t>& candidates,
                              const std::vector<std::vector<float>>& pq,
                              const std::vector<std::vector<float>>& pk) {
  const std::int64_t n = static_cast<std::int64_t>(candidates.size());
  for (std::int64_t j = 1; j < n; ++j) {
    if (candidates[j] <= candidates[j - 1]) {
      throw std::logic_error("reference: causal candidates must be in position order");
    }
  }
  const std::int64_t c = g.block[l];
  auto score = [&](const std::vector<std::vector<float>>& pooled, std::int64_t i) {
    const float first = pooled[0][i * c];
    return i == 0 ? first : std::max(pooled[l][i - 1], first);
  };
  std::vector<float> cq(n), ck(n);
  for (std::int64_t j = 0; j < n; ++j) {
    cq[j] = score(pq, candidates[j]);
    ck[j] = score(pk, candidates[j]);
  }
  const std::int64_t r = n / 64;
  // How many of the `window` candidates before j score at least as high as j.
  auto rivals = [&](const std::vector<float>& s, std::int64_t j, std::int64_t window) {
    std::int64_t count = 0;
    for (std::int64_t i = j - 1; i >= 0 && i >= j - window; --i) count += s[i] >= s[j] ? 1 : 0;
    return count;
  };
  std::vector<bool> kept(n, false);
  std::int64_t by_q = 0, by_k = 0, turned_down = 0;
  for (std::int64_t j = 0; j < n; ++j) {
    if (by_q < 64 && rivals(cq, j, r - 1) == 0) {
      kept[j] = true, ++by_q;
    } else if (by_k < 64 && rivals(ck, j, r - 2) == 0) {
      kept[j] = true, ++by_k;
    } else if (turned_down == n - 128) {
      kept[j] = true;
    } else {
      ++turned_down;
    }
  }
  return kept;
}

// Row s of the causal attention over S rows: its probabilities (p_row, S entries, zero above the
// diagonal; may be null) and its output (o_row, D entries). Returns its log-sum-exp.
double attention_row(const std::vector<double>& Q, const std::vector<double>& K,
                     const std::vector<double>& V, std::int64_t S, std::int64_t D, double scale,
                     std::int64_t s, double* p_row, double* o_row) {
  std::vector<double> logits(s + 1);
  double m = -std::numeric_limits<double>::infinity();
  for (std::int64_t j = 0; j <= s; ++j) {
    double dot = 0;
    for (std::int64_t d = 0; d < D; ++d) dot += Q[s * D + d] * K[j * D + d];
    logits[j] = dot * scale;
    m = std::max(m, logits[j]);
  }
  double sum = 0;
  for (std::int64_t j = 0; j <= s; ++j) sum += std::exp(logits[j] - m);
  std::fill_n(o_row, D, 0.0);
  if (p_row != nullptr) std::fill_n(p_row, S, 0.0);
  for (std::int64_t j = 0; j <= s; ++j) {
    const double p = std::exp(logits[j] - m) / sum;
    if (p_row != nullptr) p_row[j] = p;
    for (std::int64_t d = 0; d < D; ++d) o_row[d] += p * V[j * D + d];
  }
  return m + std::log(sum);
}

double softmax_scale(const lighthouse::Config& config, const Shape& s) {
  return config.scale ? *config.scale : 1.0 / std::sqrt(static_cast<double>(s.D));
}

// Rows of one (batch, head) of the gathered sub-sequence.
struct Gathered {
  std::vector<std::int64_t> index;  // pyramid index of each gathered row
  std::vector<double> Q, K, V;      // S x D
};

Gathered gather(const Geometry& g, const Shape& s, const std::vector<double>& q,
                const std::vector<double>& k, const std::vector<double>& v,
                const std::vector<std::int32_t>& indices, std::int64_t S, std::int64_t b,
                std::int64_t h) {
  const std::vector<double> pq = pyramid(g, s, q, b, h), pk = pyramid(g, s, k, b, h),
                            pv = pyramid(g, s, v, b, h);
  Gathered r;
  r.Q.resize(S * s.D);
  r.K.resize(S * s.D);
  r.V.resize(S * s.D);
  for (std::int64_t e = 0; e < S; ++e) {
    const std::int64_t a = indices[(b * s.H + h) * S + e];
    if (a < 0 || a >= g.total) throw std::invalid_argument("reference: index out of range");
    r.index.push_back(a);
    std::copy_n(&pq[a * s.D], s.D, &r.Q[e * s.D]);
    std::copy_n(&pk[a * s.D], s.D, &r.K[e * s.D]);
    std::copy_n(&pv[a * s.D], s.D, &r.V[e * s.D]);
  }
  return r;
}

std::int64_t heads_length(const Shape& s, const std::vector<std::int32_t>& indices) {
  const std::int64_t bh = s.B * s.H;
  if (indices.size() % bh != 0) throw std::invalid_argument("reference: indices not [B, H, S]");
  return static_cast<std::int64_t>(indices.size()) / bh;
}

}  // namespace

float token_score(const double* row, std::int64_t D) {
  // Chunks of 8 consecutive elements, each summed in d order; the chunk sums, zero-padded to a
  // power-of-two count, added pairwise, neighbours first (docs/SPEC.md, Pyramid).
  constexpr std::int64_t kChunk = 8;
  std::vector<double> sums;
  for (std::int64_t first = 0; first < D; first += kChunk) {
    double sum = 0;
    for (std::int64_t d = first; d < std::min(D, first + kChunk); ++d) sum += row[d] * row[d];
    sums.push_back(sum);
  }
  while (sums.size() & (sums.size() - 1)) sums.push_back(0.0);
  while (sums.size() > 1) {
    for (std::size_t i = 0; i < sums.size() / 2; ++i) sums[i] = sums[2 * i] + sums[2 * i + 1];
    sums.resize(sums.size() / 2);
  }
  const float score = static_cast<float>(std::sqrt(sums.empty() ? 0.0 : sums[0]));
  return std::isnan(score) ? -std::numeric_limits<float>::infinity() : score;  // a strict order
}

DenseAttention dense_causal_attention(const std::vector<double>& q, const std::vector<double>& k,
                                      const std::vector<double>& v, const std::vector<double>& dout,
                                      std::int64_t S, std::int64_t D, double scale) {
  const bool grads = !dout.empty();
  DenseAttention a;
  a.o.assign(S * D, 0.0);
  a.lse.assign(S, 0.0);
  if (grads) {
    a.dq.assign(S * D, 0.0);
    a.dk.assign(S * D, 0.0);
    a.dv.assign(S * D, 0.0);
  }
  std::vector<double> p(S), dp(S);
  for (std::int64_t s = 0; s < S; ++s) {
    a.lse[s] = attention_row(q, k, v, S, D, scale, s, p.data(), &a.o[s * D]);
    if (!grads) continue;
    // Softmax attention backward of row s: dS = P (dP - rowsum(P dP)), dP = dO V^T.
    double delta = 0;
    for (std::int64_t j = 0; j <= s; ++j) {
      double dot = 0;
      for (std::int64_t d = 0; d < D; ++d) dot += dout[s * D + d] * v[j * D + d];
      dp[j] = dot;
      delta += p[j] * dot;
    }
    for (std::int64_t j = 0; j <= s; ++j) {
      const double ds = p[j] * (dp[j] - delta) * scale;
      for (std::int64_t d = 0; d < D; ++d) {
        a.dv[j * D + d] += p[j] * dout[s * D + d];
        a.dq[s * D + d] += ds * k[j * D + d];
        a.dk[j * D + d] += ds * q[s * D + d];
      }
    }
  }
  return a;
}

std::int64_t gathered_length(const lighthouse::Config& config, std::int64_t N) {
  const Geometry g(config, N);
  return g.size[g.L - 1] + (g.L - 1) * g.p * config.topk;
}

std::vector<std::int32_t> select_head(const lighthouse::Config& config,
                                      const std::vector<float>& sq, const std::vector<float>& sk) {
  const Geometry g(config, static_cast<std::int64_t>(sq.size()));
  const std::int64_t top = g.L - 1;

  // Pooled scores: the max of the block's token scores, per level.
  std::vector<std::vector<float>> pq(g.L), pk(g.L);
  for (std::int64_t l = 0; l < g.L; ++l) {
    const std::int64_t c = g.block[l];
    pq[l].assign(g.size[l], -std::numeric_limits<float>::infinity());
    pk[l].assign(g.size[l], -std::numeric_limits<float>::infinity());
    for (std::int64_t t = 0; t < g.N; ++t) {
      pq[l][t / c] = std::max(pq[l][t / c], sq[t]);
      pk[l][t / c] = std::max(pk[l][t / c], sk[t]);
    }
  }

  struct Entry {
    double key;
    std::int64_t index;
  };
  std::vector<Entry> entries;

  if (g.L == 1) {  // dense: every token, in order
    for (std::int64_t t = 0; t < g.N; ++t) entries.push_back({static_cast<double>(t), t});
  } else {
    if (config.topk <= 0 || config.topk % kTile != 0) {
      throw std::invalid_argument("reference: topk must be a positive multiple of 128");
    }
    const std::int64_t tiles = config.topk / kTile;
    if (g.size[top] % tiles != 0 || g.size[top] / tiles < kTile) {
      throw std::invalid_argument("reference: n_L must split into tiles of >= 128 entries");
    }
    const std::int64_t C = g.size[top] / tiles;
    for (std::int64_t tile = 0; tile < tiles; ++tile) {
      std::vector<std::int64_t> candidates(C);
      std::iota(candidates.begin(), candidates.end(), tile * C);
      for (std::int64_t l = top; l >= 1; --l) {
        const std::int64_t n = static_cast<std::int64_t>(candidates.size());
        std::vector<std::int64_t> kept;  // in the spec's child order
        std::vector<bool> is_kept(n, false);
        if (config.selection == lighthouse::Selection::kStride) {
          // Content-free: candidate pos ends one of 128 equal runs of the n (in real numbers:
          // floor((pos + 1) 128 / n) > floor(pos 128 / n)); no score is read.
          for (std::int64_t pos = 0; pos < n; ++pos) {
            if ((pos + 1) * kTile / n > pos * kTile / n) {
              is_kept[pos] = true;
              kept.push_back(candidates[pos]);  // position order
            }
          }
        } else if (config.selection == lighthouse::Selection::kCausal) {
          is_kept = keep_causal(g, l, candidates, pq, pk);
          for (std::int64_t pos = 0; pos < n; ++pos) {  // position order
            if (is_kept[pos]) kept.push_back(candidates[pos]);
          }
        } else {
          std::vector<std::int64_t> positions(n);
          std::iota(positions.begin(), positions.end(), 0);
          const std::vector<std::int64_t> by_q = rank_by(positions, candidates, pq[l]);
          for (std::int64_t r = 0; r < kHalf; ++r) is_kept[by_q[r]] = true;
          std::vector<std::int64_t> rest;  // untaken positions, in candidate order
          for (std::int64_t pos = 0; pos < n; ++pos) {
            if (!is_kept[pos]) rest.push_back(pos);
          }
          const std::vector<std::int64_t> by_k = rank_by(rest, candidates, pk[l]);
          for (std::int64_t r = 0; r < kHalf; ++r) is_kept[by_k[r]] = true;
          // 64 by query score, then 64 by key score
          for (std::int64_t r = 0; r < kHalf; ++r) kept.push_back(candidates[by_q[r]]);
          for (std::int64_t r = 0; r < kHalf; ++r) kept.push_back(candidates[by_k[r]]);
        }
        if (static_cast<std::int64_t>(kept.size()) != kTile) {
          throw std::logic_error("reference: a level did not keep exactly 128 entries");
        }
        const double c = static_cast<double>(g.block[l]);
        for (std::int64_t pos = 0; pos < n; ++pos) {
          if (is_kept[pos]) continue;
          const std::int64_t i = candidates[pos];  // dropped: sits at its block's start
          entries.push_back({c * static_cast<double>(i), g.offset[l] + i});
        }
        for (std::int64_t i : kept) {  // refined: just before its block's end
          entries.push_back({c * static_cast<double>(i + 1) - std::ldexp(1.0, static_cast<int>(-l)),
                             g.offset[l] + i});
        }
        std::vector<std::int64_t> children(g.p * kTile);
        for (std::int64_t j = 0; j < g.p * kTile; ++j) {
          children[j] = kept[j / g.p] * g.p + j % g.p;
        }
        candidates = std::move(children);
      }
      for (std::int64_t t : candidates) entries.push_back({static_cast<double>(t), t});
    }
  }

  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.key < b.key; });
  std::vector<std::int32_t> order;
  for (std::size_t e = 0; e < entries.size(); ++e) {
    if (e > 0 && entries[e].key == entries[e - 1].key) {
      throw std::logic_error("reference: two gathered entries share a position key");
    }
    order.push_back(static_cast<std::int32_t>(entries[e].index));
  }
  return order;
}

void dilated_scores(const Shape& shape, const std::vector<double>& q, const std::vector<double>& k,
                    const std::vector<double>& v, std::int64_t b, std::int64_t h, int dilation,
                    std::vector<float>& sq, std::vector<float>& sk) {
  if (dilation < 1 || shape.N % dilation != 0) {
    throw std::invalid_argument("reference: the dilation must divide N");
  }
  const std::int64_t n = shape.N / dilation, D = shape.D;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  sq.assign(shape.N, 0.f);
  sk.assign(shape.N, 0.f);
  for (std::int64_t j = 0; j < dilation; ++j) {
    std::vector<double> Q(n * D), K(n * D), V(n * D);
    for (std::int64_t m = 0; m < n; ++m) {
      const std::int64_t t = m * dilation + j;
      std::copy_n(&q[at(shape, b, t, h)], D, &Q[m * D]);
      std::copy_n(&k[at(shape, b, t, h)], D, &K[m * D]);
      std::copy_n(&v[at(shape, b, t, h)], D, &V[m * D]);
    }
    const DenseAttention qk = dense_causal_attention(Q, K, V, {}, n, D, scale);
    const DenseAttention kq = dense_causal_attention(K, Q, V, {}, n, D, scale);
    for (std::int64_t m = 0; m < n; ++m) {
      sq[m * dilation + j] = token_score(&qk.o[m * D], D);
      sk[m * dilation + j] = token_score(&kq.o[m * D], D);
    }
  }
}

std::vector<std::int32_t> select(const lighthouse::Config& config, const Shape& shape,
                                 const std::vector<double>& q, const std::vector<double>& k,
                                 const std::vector<double>& v) {
  if (config.scorer == lighthouse::Scorer::kNorm) return select(config, shape, q, k);
  std::vector<std::int32_t> all;
  for (std::int64_t b = 0; b < shape.B; ++b) {
    for (std::int64_t h = 0; h < shape.H; ++h) {
      std::vector<float> sq, sk;
      dilated_scores(shape, q, k, v, b, h, config.dilation, sq, sk);
      const std::vector<std::int32_t> one = select_head(config, sq, sk);
      all.insert(all.end(), one.begin(), one.end());
    }
  }
  return all;
}

std::vector<std::int32_t> select(const lighthouse::Config& config, const Shape& shape,
                                 const std::vector<double>& q, const std::vector<double>& k) {
  if (config.scorer != lighthouse::Scorer::kNorm) {
    throw std::invalid_argument("reference: this scorer reads v; call select(..., q, k, v)");
  }
  std::vector<std::int32_t> all;
  for (std::int64_t b = 0; b < shape.B; ++b) {
    for (std::int64_t h = 0; h < shape.H; ++h) {
      std::vector<float> sq(shape.N), sk(shape.N);
      for (std::int64_t t = 0; t < shape.N; ++t) {
        sq[t] = token_score(&q[at(shape, b, t, h)], shape.D);
        sk[t] = token_score(&k[at(shape, b, t, h)], shape.D);
      }
      const std::vector<std::int32_t> one = select_head(config, sq, sk);
      all.insert(all.end(), one.begin(), one.end());
    }
  }
  return all;
}

std::vector<std::int32_t> select_gqa(const lighthouse::Config& config, const Shape& shape,
                                     std::int64_t kv_heads, const std::vector<double>& q,
                                     const std::vector<double>& k) {
  if (kv_heads < 1 || shape.H % kv_heads != 0) {
    throw std::invalid_argument("reference: kv_heads must divide H");
  }
  const std::int64_t G = shape.H / kv_heads;
  const Shape kv{shape.B, shape.N, kv_heads, shape.D};
  std::vector<std::int32_t> all;
  for (std::int64_t b = 0; b < shape.B; ++b) {
    for (std::int64_t g = 0; g < kv_heads; ++g) {
      std::vector<float> sq(shape.N), sk(shape.N);
      for (std::int64_t t = 0; t < shape.N; ++t) {
        sq[t] = -std::numeric_limits<float>::infinity();
        for (std::int64_t h = g * G; h < (g + 1) * G; ++h) {
          sq[t] = std::max(sq[t], token_score(&q[at(shape, b, t, h)], shape.D));
        }
        sk[t] = token_score(&k[at(kv, b, t, g)], shape.D);
      }
      const std::vector<std::int32_t> one = select_head(config, sq, sk);
      all.insert(all.end(), one.begin(), one.end());
    }
  }
  return all;
}

std::vector<double> expand_kv(const Shape& shape, std::int64_t kv_heads,
                              const std::vector<double>& x) {
  const std::int64_t G = shape.H / kv_heads;
  const Shape kv{shape.B, shape.N, kv_heads, shape.D};
  std::vector<double> out(shape.numel());
  for (std::int64_t b = 0; b < shape.B; ++b) {
    for (std::int64_t t = 0; t < shape.N; ++t) {
      for (std::int64_t h = 0; h < shape.H; ++h) {
        std::copy_n(&x[at(kv, b, t, h / G)], shape.D, &out[at(shape, b, t, h)]);
      }
    }
  }
  return out;
}

std::vector<std::int32_t> expand_indices(const Shape& shape, std::int64_t kv_heads,
                                         const std::vector<std::int32_t>& indices) {
  const std::int64_t G = shape.H / kv_heads;
  const std::int64_t S = static_cast<std::int64_t>(indices.size()) / (shape.B * kv_heads);
  std::vector<std::int32_t> out;
  for (std::int64_t b = 0; b < shape.B; ++b) {
    for (std::int64_t h = 0; h < shape.H; ++h) {
      const auto row = indices.begin() + (b * kv_heads + h / G) * S;
      out.insert(out.end(), row, row + S);
    }
  }
  return out;
}

std::vector<double> sum_kv_groups(const Shape& shape, std::int64_t kv_heads,
                                  const std::vector<double>& grad) {
  const std::int64_t G = shape.H / kv_heads;
  const Shape kv{shape.B, shape.N, kv_heads, shape.D};
  std::vector<double> out(kv.numel(), 0.0);
  for (std::int64_t b = 0; b < shape.B; ++b) {
    for (std::int64_t t = 0; t < shape.N; ++t) {
      for (std::int64_t h = 0; h < shape.H; ++h) {
        for (std::int64_t d = 0; d < shape.D; ++d) {
          out[at(kv, b, t, h / G) + d] += grad[at(shape, b, t, h) + d];
        }
      }
    }
  }
  return out;
}

std::vector<double> attend(const lighthouse::Config& config, const Shape& shape,
                           const std::vector<double>& q, const std::vector<double>& k,
                           const std::vector<double>& v, const std::vector<std::int32_t>& indices) {
  const Geometry g(config, shape.N);
  const std::int64_t S = heads_length(shape, indices), D = shape.D;
  const double scale = softmax_scale(config, shape);
  std::vector<double> out(shape.numel(), 0.0);
  for (std::int64_t b = 0; b < shape.B; ++b) {
    for (std::int64_t h = 0; h < shape.H; ++h) {
      const Gathered rows = gather(g, shape, q, k, v, indices, S, b, h);
      const DenseAttention a = dense_causal_attention(rows.Q, rows.K, rows.V, {}, S, D, scale);
      for (std::int64_t e = 0; e < S; ++e) {
        const auto [l, i] = g.locate(rows.index[e]);
        const auto [first, last] = g.scatter_range(l, i);
        for (std::int64_t t = first; t <= last; ++t) {
          for (std::int64_t d = 0; d < D; ++d) out[at(shape, b, t, h) + d] += a.o[e * D + d];
        }
      }
    }
  }
  return out;
}

std::vector<double> attend_tokens(const lighthouse::Config& config, const Shape& shape,
                                  const std::vector<double>& q, const std::vector<double>& k,
                                  const std::vector<double>& v,
                                  const std::vector<std::int32_t>& indices,
                                  const std::vector<std::int64_t>& tokens) {
  const Geometry g(config, shape.N);
  const std::int64_t S = heads_length(shape, indices), D = shape.D;
  const double scale = softmax_scale(config, shape);
  const auto T = static_cast<std::int64_t>(tokens.size());
  std::vector<double> out(shape.B * T * shape.H * D, 0.0), row(D);
  for (std::int64_t b = 0; b < shape.B; ++b) {
    for (std::int64_t h = 0; h < shape.H; ++h) {
      const Gathered rows = gather(g, shape, q, k, v, indices, S, b, h);
      std::vector<std::int64_t> position(g.total, -1);  // gathered row of each pyramid index
      for (std::int64_t e = 0; e < S; ++e) position[rows.index[e]] = e;
      for (std::int64_t j = 0; j < T; ++j) {
        const std::int64_t t = tokens[j];
        if (t < 0 || t >= shape.N) throw std::invalid_argument("reference: token out of range");
        double* dst = &out[((b * T + j) * shape.H + h) * D];
        for (std::int64_t l = 0; l < g.L; ++l) {  // the entry of each level whose range holds t
          const std::int64_t i = (t + 1) / g.block[l] - 1;
          if (i < 0 || position[g.offset[l] + i] < 0) continue;
          if (g.scatter_range(l, i).first > t || g.scatter_range(l, i).second < t) {
            throw std::logic_error("reference: scatter ranges and their inverse disagree");
          }
          attention_row(rows.Q, rows.K, rows.V, S, D, scale, position[g.offset[l] + i], nullptr,
                        row.data());
          for (std::int64_t d = 0; d < D; ++d) dst[d] += row[d];
        }
      }
    }
  }
  return out;
}

Gradients backward(const lighthouse::Config& config, const Shape& shape,
                   const std::vector<double>& q, const std::vector<double>& k,
                   const std::vector<double>& v, const std::vector<std::int32_t>& indices,
                   const std::vector<double>& dout) {
  const Geometry g(config, shape.N);
  const std::int64_t S = heads_length(shape, indices), D = shape.D;
  const double scale = softmax_scale(config, shape);
  Gradients grads{std::vector<double>(shape.numel(), 0.0), std::vector<double>(shape.numel(), 0.0),
                  std::vector<double>(shape.numel(), 0.0)};
  for (std::int64_t b = 0; b < shape.B; ++b) {
    for (std::int64_t h = 0; h < shape.H; ++h) {
      const Gathered rows = gather(g, shape, q, k, v, indices, S, b, h);

      // Scatter's adjoint: an entry's output gradient sums dout over the tokens it wrote.
      std::vector<double> dO(S * D, 0.0);
      for (std::int64_t e = 0; e < S; ++e) {
        const auto [l, i] = g.locate(rows.index[e]);
        const auto [first, last] = g.scatter_range(l, i);
        for (std::int64_t t = first; t <= last; ++t) {
          for (std::int64_t d = 0; d < D; ++d) dO[e * D + d] += dout[at(shape, b, t, h) + d];
        }
      }
      const DenseAttention a = dense_causal_attention(rows.Q, rows.K, rows.V, dO, S, D, scale);

      // Gathered rows -> pyramid rows -> tokens (each of a block's c tokens gets grad / c).
      const std::pair<const std::vector<double>*, std::vector<double>*> flows[] = {
          {&a.dq, &grads.dq}, {&a.dk, &grads.dk}, {&a.dv, &grads.dv}};
      for (const auto& [dsel, dst] : flows) {
        std::vector<double> dpyr(g.total * D, 0.0);
        for (std::int64_t e = 0; e < S; ++e) {
          for (std::int64_t d = 0; d < D; ++d) dpyr[rows.index[e] * D + d] += (*dsel)[e * D + d];
        }
        for (std::int64_t l = 0; l < g.L; ++l) {
          const std::int64_t c = g.block[l];
          for (std::int64_t t = 0; t < shape.N; ++t) {
            const double* src = &dpyr[(g.offset[l] + t / c) * D];
            for (std::int64_t d = 0; d < D; ++d) {
              (*dst)[at(shape, b, t, h) + d] += src[d] / static_cast<double>(c);
            }
          }
        }
      }
    }
  }
  return grads;
}

double rel_l2(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  if (std::isnan(diff)) return std::numeric_limits<double>::infinity();
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(a[i] - b[i]);
    if (std::isnan(d)) return std::numeric_limits<double>::infinity();
    m = std::max(m, d);
  }
  return m;
}

}  // namespace lhtest
