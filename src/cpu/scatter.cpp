#include "cpu/scatter.hpp"

#include <algorithm>
#include <vector>

#include "cpu/dtype_dispatch.hpp"
#include "cpu/level_sums.hpp"

namespace lighthouse::cpu {

void scatter_rows(const Plan& plan, const void* o_sel, const std::int32_t* position,
                  const TensorView& out, int threads) {
  dispatch_float(out.dtype, [&](auto zero) {
    // The level-l entry whose scatter range [i c + c - 1, i c + 2c - 2] holds t, if any.
    sum_levels_per_token<false>(
        plan, static_cast<const decltype(zero)*>(o_sel), position, out, threads,
        [&](std::size_t l, std::int64_t t) { return (t + 1) / plan.block[l] - 1; });
  });
}

void scatter_rows_backward(const Plan& plan, const TensorView& dout, const std::int32_t* indices,
                           void* do_sel, int threads) {
  dispatch_float(dout.dtype, [&](auto zero) {
    sum_tokens_per_row<false>(
        plan, dout, indices, static_cast<decltype(zero)*>(do_sel), threads,
        [&](int l, std::int64_t i) {
          const std::int64_t c = plan.block[l];
          return TokenRange{i * c + c - 1, std::min(i * c + 2 * c - 2, plan.seq - 1)};
        });
  });
}

namespace {

template <typename T>
void output_edge_rows_t(const Plan& plan, const std::int32_t* position, const T* o_sel, T* edges) {
  const std::int64_t BH = plan.batch * plan.heads, S = plan.S, D = plan.head_dim;
  const std::int64_t P = plan.pyramid_size, L = plan.config.levels;
  for (std::int64_t bh = 0; bh < BH; ++bh) {
    for (std::int64_t l = 1; l < L; ++l) {
      const std::int32_t s = position[bh * P + plan.offset[l] + plan.size[l] - 1];
      T* dst = edges + (bh * (L - 1) + l - 1) * D;
      if (s < 0) {
        std::fill_n(dst, D, T(0));
      } else {
        std::copy_n(o_sel + (bh * S + s) * D, D, dst);
      }
    }
  }
}

template <typename T>
void scatter_edge_tokens_t(const Plan& plan, const T* o_sel, const std::int32_t* position,
                           const T* prev_edges, const TensorView& out) {
  const std::int64_t B = plan.batch, H = plan.heads, S = plan.S, D = plan.head_dim;
  const std::int64_t P = plan.pyramid_size, L = plan.config.levels;
  const std::int64_t tokens = std::min(plan.block.back() - 1, plan.seq);
  std::vector<double> acc(static_cast<std::size_t>(D));
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t bh = b * H + h;
      for (std::int64_t t = 0; t < tokens; ++t) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (std::int64_t l = 0; l < L; ++l) {  // fine to coarse, as scatter_rows
          const std::int64_t i = (t + 1) / plan.block[l] - 1;
          const T* row;
          if (i >= 0) {
            const std::int32_t s = position[bh * P + plan.offset[l] + i];
            if (s < 0) continue;
            row = o_sel + (bh * S + s) * D;
          } else {  // the previous chunk's last entry of this level (l >= 1: c_0 = 1)
            row = prev_edges + (bh * (L - 1) + l - 1) * D;
          }
          for (std::int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(row[d]);
        }
        T* dst = row_ptr<T>(out, b, t, h);
        for (std::int64_t d = 0; d < D; ++d) dst[d] = static_cast<T>(acc[d]);
      }
    }
  }
}

template <typename T>
void scatter_backward_edge_rows_t(const Plan& plan, const TensorView& dout,
                                  const std::int32_t* position, const T* next_dout, T* do_sel) {
  const std::int64_t B = plan.batch, H = plan.heads, S = plan.S, D = plan.head_dim;
  const std::int64_t P = plan.pyramid_size, L = plan.config.levels, N = plan.seq;
  const std::int64_t edge = plan.block.back() - 1;  // tokens per batch in next_dout
  std::vector<double> acc(static_cast<std::size_t>(D));
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t bh = b * H + h;
      for (std::int64_t l = 1; l < L; ++l) {
        const std::int32_t s = position[bh * P + plan.offset[l] + plan.size[l] - 1];
        if (s < 0) continue;
        // Its tokens: [N - 1, N + c_l - 2], the last of this chunk, then c_l - 1 of the next.
        std::fill(acc.begin(), acc.end(), 0.0);
        const T* own = row_ptr<const T>(dout, b, N - 1, h);
        for (std::int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(own[d]);
        for (std::int64_t j = 0; j < plan.block[l] - 1; ++j) {
          const T* row = next_dout + ((b * edge + j) * H + h) * D;
          for (std::int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(row[d]);
        }
        T* dst = do_sel + (bh * S + s) * D;
        for (std::int64_t d = 0; d < D; ++d) dst[d] = static_cast<T>(acc[d]);
      }
    }
  }
}

}  // namespace

void output_edge_rows(const Plan& plan, DType dtype, const std::int32_t* position,
                      const void* o_sel, void* edges) {
  dispatch_float(dtype, [&](auto zero) {
    using T = decltype(zero);
    output_edge_rows_t(plan, position, static_cast<const T*>(o_sel), static_cast<T*>(edges));
  });
}

void scatter_edge_tokens(const Plan& plan, const void* o_sel, const std::int32_t* position,
                         const void* prev_edges, const TensorView& out) {
  dispatch_float(out.dtype, [&](auto zero) {
    using T = decltype(zero);
    scatter_edge_tokens_t(plan, static_cast<const T*>(o_sel), position,
                          static_cast<const T*>(prev_edges), out);
  });
}

void scatter_backward_edge_rows(const Plan& plan, const TensorView& dout,
                                const std::int32_t* position, const void* next_dout, void* do_sel) {
  dispatch_float(dout.dtype, [&](auto zero) {
    using T = decltype(zero);
    scatter_backward_edge_rows_t(plan, dout, position, static_cast<const T*>(next_dout),
                                 static_cast<T*>(do_sel));
  });
}

}  // namespace lighthouse::cpu
