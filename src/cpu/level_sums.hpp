// The two walks between token rows and selected pyramid rows that the gather (and its
// backward) and the scatter (and its backward) share; they differ only in which
// tokens an entry covers and whether the sum is a mean. Sums are in double, in a fixed order,
// written once: the same bits for any thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/dtype_dispatch.hpp"
#include "cpu/parallel.hpp"
#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::cpu {

// Level (0-based) of a pyramid index: the last level whose offset is <= idx.
inline int level_of(const Plan& plan, std::int64_t idx) {
  int l = static_cast<int>(plan.offset.size()) - 1;
  while (plan.offset[l] > idx) --l;
  return l;
}

// The tokens [first, last] of one pyramid entry.
struct TokenRange {
  std::int64_t first, last;
};

// The KV group whose selection serves head h of a tensor of `heads` heads (q, out: the plan's
// query heads; k, v: its KV heads, each its own group): row (b * heads + h) / group of indices
// and position.
inline std::int64_t group_size(const Plan& plan, std::int64_t heads) {
  return heads / plan.kv_heads;
}

// Row s of every (b, h) of dst [B*H][S][D] (H = x's heads) = the sum of x's tokens
// range_of(l, i) (in token order) for the selected entry indices[(b*H + h) / G * S + s] =
// plan.offset[l] + i, G = group_size(); with kMean, divided by the range's length (a power of
// two, so exactly).
template <bool kMean, typename T, typename RangeOf>
void sum_tokens_per_row(const Plan& plan, const TensorView& x, const std::int32_t* indices, T* dst,
                        int threads, RangeOf range_of) {
  const std::int64_t B = plan.batch, H = x.shape[2], S = plan.S, D = plan.head_dim;
  const std::int64_t G = group_size(plan, H);
  parallel_chunks(
      B * H, S, kRowGrain, D, threads,
      [&](std::int64_t bh, std::int64_t begin, std::int64_t end, std::vector<double>& acc) {
        const std::int64_t b = bh / H, h = bh % H;
        for (std::int64_t s = begin; s < end; ++s) {
          const std::int64_t idx = indices[bh / G * S + s];
          const int l = level_of(plan, idx);
          const TokenRange r = range_of(l, idx - plan.offset[l]);
          T* out = dst + (bh * S + s) * D;
          if (r.first == r.last) {
            std::copy_n(row_ptr<const T>(x, b, r.first, h), D, out);
            continue;
          }
          std::fill(acc.begin(), acc.end(), 0.0);
          for (std::int64_t n = r.first; n <= r.last; ++n) {
            const T* row = row_ptr<const T>(x, b, n, h);
            for (std::int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(row[d]);
          }
          if constexpr (kMean) {
            const double inv = 1.0 / static_cast<double>(r.last - r.first + 1);
            for (std::int64_t d = 0; d < D; ++d) out[d] = static_cast<T>(acc[d] * inv);
          } else {
            for (std::int64_t d = 0; d < D; ++d) out[d] = static_cast<T>(acc[d]);
          }
        }
      });
}

// Token t of every (b, h) of out [B, N, H, D] = the sum over levels l = 0..L-1 (in that order) of
// row s of rows [B*H][S][D], s = position[(b*H + h) / G * pyramid_size + offset_l + entry_of(l,
// t)] (H = out's heads, G = group_size());
// a level adds nothing where entry_of is negative or s is -1 (not selected). With kMean, each
// level's row is divided by c_l first (the gradient of a block mean). out is overwritten.
template <bool kMean, typename T, typename EntryOf>
void sum_levels_per_token(const Plan& plan, const T* rows, const std::int32_t* position,
                          const TensorView& out, int threads, EntryOf entry_of) {
  const std::int64_t B = plan.batch, H = out.shape[2], N = plan.seq, D = plan.head_dim;
  const std::int64_t S = plan.S, P = plan.pyramid_size, G = group_size(plan, H);
  const std::size_t L = plan.size.size();
  parallel_chunks(
      B * H, N, kTokenGrain, D, threads,
      [&](std::int64_t bh, std::int64_t begin, std::int64_t end, std::vector<double>& acc) {
        const std::int64_t b = bh / H, h = bh % H;
        const std::int32_t* pos = position + bh / G * P;
        const T* g = rows + bh * S * D;
        for (std::int64_t t = begin; t < end; ++t) {
          std::fill(acc.begin(), acc.end(), 0.0);
          for (std::size_t l = 0; l < L; ++l) {  // fixed order: fine to coarse
            const std::int64_t i = entry_of(l, t);
            if (i < 0) continue;
            const std::int32_t s = pos[plan.offset[l] + i];
            if (s < 0) continue;
            const T* row = g + s * D;
            if constexpr (kMean) {
              const double inv = 1.0 / static_cast<double>(plan.block[l]);
              for (std::int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(row[d]) * inv;
            } else {
              for (std::int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(row[d]);
            }
          }
          T* dst = row_ptr<T>(out, b, t, h);
          for (std::int64_t d = 0; d < D; ++d) dst[d] = static_cast<T>(acc[d]);
        }
      });
}

}  // namespace lighthouse::cpu
