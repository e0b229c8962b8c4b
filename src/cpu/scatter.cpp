#include "cpu/scatter.hpp"

#include <algorithm>
#include <vector>

#include "cpu/dtype_dispatch.hpp"
#include "cpu/parallel.hpp"
#include "cpu/pyramid.hpp"

namespace lighthouse::cpu {

namespace {

template <typename T>
void scatter_t(const Plan& plan, const T* o_sel, const std::int32_t* position,
               const TensorView& out, int threads) {
  const std::int64_t B = plan.batch, H = plan.heads, N = plan.seq, D = plan.head_dim;
  const std::int64_t S = plan.S, P = plan.pyramid_size;
  const std::size_t L = plan.size.size();
  parallel_chunks(
      B * H, N, kTokenGrain, D, threads,
      [&](std::int64_t bh, std::int64_t begin, std::int64_t end, std::vector<double>& acc) {
        const std::int64_t b = bh / H, h = bh % H;
        const std::int32_t* pos = position + bh * P;
        const T* o = o_sel + bh * S * D;
        for (std::int64_t t = begin; t < end; ++t) {
          std::fill(acc.begin(), acc.end(), 0.0);
          for (std::size_t l = 0; l < L; ++l) {
            // The level-l entry whose scatter range [i c + c - 1, i c + 2c - 2] holds t.
            const std::int64_t i = (t + 1) / plan.block[l] - 1;
            if (i < 0) continue;
            const std::int32_t s = pos[plan.offset[l] + i];
            if (s < 0) continue;
            const T* row = o + s * D;
            for (std::int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(row[d]);
          }
          T* dst = row_ptr<T>(out, b, t, h);
          for (std::int64_t d = 0; d < D; ++d) dst[d] = static_cast<T>(acc[d]);
        }
      });
}

template <typename T>
void scatter_backward_t(const Plan& plan, const TensorView& dout, const std::int32_t* indices,
                        T* do_sel, int threads) {
  const std::int64_t B = plan.batch, H = plan.heads, N = plan.seq, D = plan.head_dim;
  const std::int64_t S = plan.S;
  parallel_chunks(
      B * H, S, kRowGrain, D, threads,
      [&](std::int64_t bh, std::int64_t begin, std::int64_t end, std::vector<double>& acc) {
        const std::int64_t b = bh / H, h = bh % H;
        for (std::int64_t s = begin; s < end; ++s) {
          const std::int64_t idx = indices[bh * S + s];
          const int l = level_of(plan, idx);
          const std::int64_t block = plan.block[l];
          const std::int64_t i = idx - plan.offset[l];
          const std::int64_t first = i * block + block - 1;
          const std::int64_t last = std::min(i * block + 2 * block - 2, N - 1);
          T* dst = do_sel + (bh * S + s) * D;
          if (first == last) {
            std::copy_n(row_ptr<const T>(dout, b, first, h), D, dst);
            continue;
          }
          std::fill(acc.begin(), acc.end(), 0.0);
          for (std::int64_t t = first; t <= last; ++t) {
            const T* row = row_ptr<const T>(dout, b, t, h);
            for (std::int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(row[d]);
          }
          for (std::int64_t d = 0; d < D; ++d) dst[d] = static_cast<T>(acc[d]);
        }
      });
}

}  // namespace

void scatter_rows(const Plan& plan, const void* o_sel, const std::int32_t* position,
                  const TensorView& out, int threads) {
  dispatch_float(out.dtype, [&](auto zero) {
    using T = decltype(zero);
    scatter_t<T>(plan, static_cast<const T*>(o_sel), position, out, threads);
  });
}

void scatter_rows_backward(const Plan& plan, const TensorView& dout, const std::int32_t* indices,
                           void* do_sel, int threads) {
  dispatch_float(dout.dtype, [&](auto zero) {
    using T = decltype(zero);
    scatter_backward_t<T>(plan, dout, indices, static_cast<T*>(do_sel), threads);
  });
}

}  // namespace lighthouse::cpu
