#include "cpu/selection.hpp"

#include <algorithm>
#include <numeric>
#include <utility>
#include <vector>

#include "cpu/parallel.hpp"
#include "lighthouse/config.hpp"

namespace lighthouse::cpu {

namespace {

constexpr std::int64_t kHalf = kTileSize / 2;  // kept by query score, then by key score

struct TileScratch {
  std::vector<std::int64_t> candidates, parents;
  std::vector<std::int32_t> order;
  std::vector<char> kept;
  std::vector<float> score_q, score_k;  // causal scores by candidate position
  std::vector<std::pair<std::int64_t, std::int32_t>> entries;  // (position key, pyramid index)
};

// Moves the `count` best candidates (score descending, then candidate position ascending) among
// order[first..] to order[first..first+count), best first. Ties resolve by position, so the
// result is a deterministic function of the scores.
void take_best(const float* score, const std::vector<std::int64_t>& candidates,
               std::vector<std::int32_t>& order, std::size_t first, std::int64_t count) {
  auto better = [&](std::int32_t a, std::int32_t b) {
    const float sa = score[candidates[a]], sb = score[candidates[b]];
    return sa > sb || (sa == sb && a < b);
  };
  std::partial_sort(order.begin() + static_cast<std::ptrdiff_t>(first),
                    order.begin() + static_cast<std::ptrdiff_t>(first + count), order.end(),
                    better);
}

// The original's rule: the 64 candidates with the highest query score, then the 64 of the rest
// with the highest key score. Parents are listed in that order (the spec's child order).
void keep_original(const float* level_q, const float* level_k, TileScratch& w) {
  const std::size_t n = w.candidates.size();
  w.order.resize(n);
  std::iota(w.order.begin(), w.order.end(), 0);
  take_best(level_q, w.candidates, w.order, 0, kHalf);
  take_best(level_k, w.candidates, w.order, kHalf, kHalf);
  w.kept.assign(n, 0);
  w.parents.resize(kTileSize);
  for (std::int64_t j = 0; j < kTileSize; ++j) {
    w.kept[w.order[j]] = 1;
    w.parents[j] = w.candidates[w.order[j]];
  }
}

// The causal rule (docs/SPEC.md), candidates in position order. A block's score is a
// prediction from its past: the max of the previous block's pooled score (same level) and its
// own first token's score. A candidate is eligible by query (key) score when that score beats
// the last w_q (w_k) candidates' scores; it is kept while the query (key) quota of 64 lasts, and
// once n - 128 candidates have been turned down every later one is kept, so exactly 128 are.
// Each decision reads scores of tokens up to the candidate's first token only. Parents are the
// kept candidates in position order.
void keep_causal(const Plan& plan, int l, const float* sq, const float* sk, TileScratch& w) {
  const std::int64_t n = static_cast<std::int64_t>(w.candidates.size());
  const std::int64_t block = plan.block[l];
  const float* level_q = sq + plan.offset[l];
  const float* level_k = sk + plan.offset[l];
  auto causal_score = [&](const float* level, const float* tokens, std::int64_t i) {
    const float first = tokens[i * block];  // level 1 is at offset 0
    return i > 0 ? std::max(level[i - 1], first) : first;
  };
  w.score_q.resize(static_cast<std::size_t>(n));
  w.score_k.resize(static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j) {
    w.score_q[j] = causal_score(level_q, sq, w.candidates[j]);
    w.score_k[j] = causal_score(level_k, sk, w.candidates[j]);
  }
  const CausalWindows win = causal_windows(n);
  // Beats every one of the (up to) `window` candidates just before j.
  auto record = [](const std::vector<float>& score, std::int64_t j, std::int64_t window) {
    for (std::int64_t i = std::max<std::int64_t>(0, j - window); i < j; ++i) {
      if (!(score[j] > score[i])) return false;
    }
    return true;
  };
  w.kept.assign(static_cast<std::size_t>(n), 0);
  w.parents.clear();
  std::int64_t by_query = 0, by_key = 0, rejected = 0;
  for (std::int64_t j = 0; j < n; ++j) {
    bool keep = false;
    if (by_query < kHalf && record(w.score_q, j, win.query)) {
      keep = true, ++by_query;
    } else if (by_key < kHalf && record(w.score_k, j, win.key)) {
      keep = true, ++by_key;
    } else if (rejected == n - kTileSize) {
      keep = true;  // the rest must all be kept to fill the tile's 128
    } else {
      ++rejected;
    }
    if (keep) {
      w.kept[j] = 1;
      w.parents.push_back(w.candidates[j]);
    }
  }
}

// The stride rule (docs/SPEC.md), the causal rule's content-free control: of the n candidates in
// position order, keep the last of each of 128 runs of consecutive candidates, run m ending at
// ceil((m + 1) n / 128) - 1 (the last of every n / 128 when 128 divides n). Reads no scores, so
// the layout is fixed by the plan alone. Parents are the kept candidates in position order.
void keep_stride(TileScratch& w) {
  const std::int64_t n = static_cast<std::int64_t>(w.candidates.size());
  w.kept.assign(static_cast<std::size_t>(n), 0);
  w.parents.clear();
  for (std::int64_t m = 0; m < kTileSize; ++m) {
    const std::int64_t j = stride_kept(n, m);
    w.kept[j] = 1;
    w.parents.push_back(w.candidates[j]);
  }
}

void select_tile(const Plan& plan, const float* sq, const float* sk, std::int64_t tile,
                 std::int32_t* out, std::int32_t* position, std::int64_t out_base, TileScratch& w) {
  const int L = plan.config.levels;
  const std::int64_t p = plan.config.pool;
  const std::int64_t C = plan.tile_entries;
  // Integer position keys: the spec's keys times 2^(L-1), so the kept-entry offsets
  // 2^(1-level) become whole numbers.
  const int shift = L - 1;
  w.entries.clear();
  for (int l = L - 1; l >= 0; --l) {
    const std::int64_t block = plan.block[l];
    if (l == L - 1) {
      w.candidates.resize(static_cast<std::size_t>(C));
      std::iota(w.candidates.begin(), w.candidates.end(), tile * C);
    } else {
      w.candidates.resize(static_cast<std::size_t>(p * kTileSize));
      for (std::int64_t j = 0; j < p * kTileSize; ++j) {
        w.candidates[j] = w.parents[j / p] * p + j % p;
      }
    }
    const std::size_t n = w.candidates.size();
    if (l == 0) {  // finest level: every candidate is a token entry
      for (std::int64_t i : w.candidates) {
        w.entries.emplace_back(i << shift, static_cast<std::int32_t>(i));
      }
      break;
    }
    switch (plan.config.selection) {
      case Selection::kCausal:
        keep_causal(plan, l, sq, sk, w);
        break;
      case Selection::kStride:
        keep_stride(w);
        break;
      case Selection::kOriginal:
        keep_original(sq + plan.offset[l], sk + plan.offset[l], w);
        break;
    }
    for (std::size_t a = 0; a < n; ++a) {
      const std::int64_t i = w.candidates[a];
      const std::int64_t key = w.kept[a]
                                   ? ((block * (i + 1)) << shift) - (std::int64_t{1} << (shift - l))
                                   : (block * i) << shift;
      w.entries.emplace_back(key, static_cast<std::int32_t>(plan.offset[l] + i));
    }
  }
  std::sort(w.entries.begin(), w.entries.end());
  for (std::size_t e = 0; e < w.entries.size(); ++e) {
    out[e] = w.entries[e].second;
    position[w.entries[e].second] = static_cast<std::int32_t>(out_base + e);
  }
}

}  // namespace

CausalWindows causal_windows(std::int64_t candidates) {
  const std::int64_t ratio = candidates / kHalf;  // >= 2: a level has >= 128 candidates
  return {ratio - 1, ratio - 2};
}

std::int64_t stride_kept(std::int64_t candidates, std::int64_t m) {
  return ((m + 1) * candidates + kTileSize - 1) / kTileSize - 1;
}

std::int64_t entries_per_tile(const Plan& plan) {
  return plan.tile_entries +
         static_cast<std::int64_t>(plan.config.levels - 1) * plan.config.pool * kTileSize;
}

void select_entries(const Plan& plan, const float* sq, const float* sk, std::int32_t* indices,
                    std::int32_t* position, int threads) {
  // One selection per KV group (per head without GQA).
  const std::int64_t BH = plan.batch * plan.kv_heads, S = plan.S, P = plan.pyramid_size;
  std::fill(position, position + BH * P, -1);
  if (plan.dense()) {  // one level: every token, in order
#pragma omp parallel for schedule(static) num_threads(threads)
    for (std::int64_t bh = 0; bh < BH; ++bh) {
      for (std::int64_t s = 0; s < S; ++s) {
        indices[bh * S + s] = static_cast<std::int32_t>(s);
        position[bh * P + s] = static_cast<std::int32_t>(s);
      }
    }
    return;
  }
  const std::int64_t E = entries_per_tile(plan);
  const std::int64_t tiles = plan.tiles;
#pragma omp parallel num_threads(threads)
  {
    TileScratch scratch;
#pragma omp for schedule(dynamic)
    for (std::int64_t w = 0; w < BH * tiles; ++w) {
      const std::int64_t bh = w / tiles, tile = w % tiles;
      select_tile(plan, sq + bh * P, sk + bh * P, tile, indices + bh * S + tile * E,
                  position + bh * P, tile * E, scratch);
    }
  }
}

}  // namespace lighthouse::cpu
