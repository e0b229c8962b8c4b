#include "cpu/gather.hpp"

#include "cpu/dtype_dispatch.hpp"
#include "cpu/level_sums.hpp"

namespace lighthouse::cpu {

void gather_rows(const Plan& plan, const TensorView& x, const std::int32_t* indices, void* dst,
                 int threads) {
  dispatch_float(x.dtype, [&](auto zero) {
    // A pyramid row is the mean of its block's tokens.
    sum_tokens_per_row<true>(plan, x, indices, static_cast<decltype(zero)*>(dst), threads,
                             [&](int l, std::int64_t i) {
                               const std::int64_t c = plan.block[l];
                               return TokenRange{i * c, i * c + c - 1};
                             });
  });
}

void gather_rows_backward(const Plan& plan, const void* grad_sel, const std::int32_t* position,
                          const TensorView& dx, int threads) {
  dispatch_float(dx.dtype, [&](auto zero) {
    // Token t is in entry t / c_l of each level.
    sum_levels_per_token<true>(plan, static_cast<const decltype(zero)*>(grad_sel), position, dx,
                               threads,
                               [&](std::size_t l, std::int64_t t) { return t / plan.block[l]; });
  });
}

}  // namespace lighthouse::cpu
