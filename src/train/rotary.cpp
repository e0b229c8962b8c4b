#include <cmath>

#include "train/layers.hpp"

namespace lighthouse::train {

template <typename T>
void rotary_tables(std::int64_t seq, std::int64_t head_dim, double base, T* cos, T* sin) {
  const std::int64_t half = head_dim / 2;
  for (std::int64_t n = 0; n < seq; ++n) {
    for (std::int64_t i = 0; i < half; ++i) {
      // Angles in double: positions reach tens of thousands of radians.
      const double freq =
          std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
      const double angle = static_cast<double>(n) * freq;
      cos[n * half + i] = static_cast<T>(std::cos(angle));
      sin[n * half + i] = static_cast<T>(std::sin(angle));
    }
  }
}

template <typename T>
void rotary_apply(T* x, std::int64_t batch, std::int64_t seq, std::int64_t heads,
                  std::int64_t head_dim, std::int64_t row_stride, const T* cos, const T* sin,
                  bool inverse) {
  const std::int64_t half = head_dim / 2;
  const T sign = inverse ? T(-1) : T(1);
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t n = 0; n < seq; ++n) {
      const T* c = cos + n * half;
      const T* s = sin + n * half;
      T* row = x + (b * seq + n) * row_stride;
      for (std::int64_t h = 0; h < heads; ++h) {
        T* v = row + h * head_dim;
        for (std::int64_t i = 0; i < half; ++i) {
          const T a = v[i], bb = v[i + half];
          v[i] = a * c[i] - sign * bb * s[i];
          v[i + half] = sign * a * s[i] + bb * c[i];
        }
      }
    }
  }
}

#define LH_INSTANTIATE(T)                                                                   \
  template void rotary_tables<T>(std::int64_t, std::int64_t, double, T*, T*);               \
  template void rotary_apply<T>(T*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, \
                                std::int64_t, const T*, const T*, bool);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lighthouse::train
