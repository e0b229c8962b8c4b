#include "cpu/scatter.hpp"

#include <algorithm>

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

}  // namespace lighthouse::cpu
