#include <cmath>

#include "train/layers.hpp"

namespace lighthouse::train {

template <typename T>
void rmsnorm_forward(const T* x, const T* gain, T* y, T* inv_rms, std::int64_t rows,
                     std::int64_t dim, T eps) {
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    double ss = 0;
    for (std::int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const T inv = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    inv_rms[r] = inv;
    T* yr = y + r * dim;
    for (std::int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * gain[i];
  }
}

template <typename T>
void rmsnorm_backward(const T* x, const T* gain, const T* inv_rms, const T* dy, T* dx, T* dgain,
                      std::int64_t rows, std::int64_t dim) {
  // With n = x * inv (inv = 1/rms): dx = inv * (gain*dy - n * mean(gain*dy*n)).
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    const T* dyr = dy + r * dim;
    const T inv = inv_rms[r];
    double dot = 0;
    for (std::int64_t i = 0; i < dim; ++i) dot += static_cast<double>(gain[i] * dyr[i]) * xr[i];
    const T c = static_cast<T>(dot / static_cast<double>(dim)) * inv * inv;
    T* dxr = dx + r * dim;
    for (std::int64_t i = 0; i < dim; ++i) dxr[i] += inv * (gain[i] * dyr[i] - xr[i] * c);
  }
  // The gain gradient sums over rows: serial, in row order, so the result is reproducible.
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    const T* dyr = dy + r * dim;
    const T inv = inv_rms[r];
    for (std::int64_t i = 0; i < dim; ++i) dgain[i] += dyr[i] * xr[i] * inv;
  }
}

#define LH_INSTANTIATE(T)                                                                         \
  template void rmsnorm_forward<T>(const T*, const T*, T*, T*, std::int64_t, std::int64_t, T);    \
  template void rmsnorm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, std::int64_t, \
                                    std::int64_t);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lighthouse::train
