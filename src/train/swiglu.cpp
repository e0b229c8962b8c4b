#include <numbers>

#include "math/fast_exp.hpp"
#include "train/layers.hpp"

namespace lighthouse::train {

namespace {
// 1 / (1 + e^-x) through the branch-free exp2 of the attention kernel, so that the loops below
// vectorise (std::exp is a library call per element). Saturates cleanly: the exp2 clamps its
// argument, giving 0 or 1 (never NaN) for large |x|.
template <typename T>
T sigmoid(T x) {
  return T(1) / (T(1) + cpu::fast_exp2(-x * std::numbers::log2e_v<T>));
}
}  // namespace

template <typename T>
void swiglu_forward(const T* hg, T* a, std::int64_t rows, std::int64_t hidden) {
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* h = hg + r * 2 * hidden;
    const T* g = h + hidden;
    T* ar = a + r * hidden;
    for (std::int64_t i = 0; i < hidden; ++i) ar[i] = h[i] * sigmoid(h[i]) * g[i];
  }
}

template <typename T>
void swiglu_backward(const T* hg, const T* da, T* dhg, std::int64_t rows, std::int64_t hidden) {
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* h = hg + r * 2 * hidden;
    const T* g = h + hidden;
    const T* dar = da + r * hidden;
    T* dh = dhg + r * 2 * hidden;
    T* dg = dh + hidden;
    for (std::int64_t i = 0; i < hidden; ++i) {
      const T s = sigmoid(h[i]);
      const T silu = h[i] * s;
      dg[i] = dar[i] * silu;
      // silu'(h) = s * (1 + h * (1 - s))
      dh[i] = dar[i] * g[i] * s * (T(1) + h[i] * (T(1) - s));
    }
  }
}

#define LH_INSTANTIATE(T)                                                    \
  template void swiglu_forward<T>(const T*, T*, std::int64_t, std::int64_t); \
  template void swiglu_backward<T>(const T*, const T*, T*, std::int64_t, std::int64_t);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lighthouse::train
