#include <algorithm>

#include "train/layers.hpp"

namespace lighthouse::train {

template <typename T>
void embedding_forward(const std::int32_t* tokens, const T* table, T* y, std::int64_t rows,
                       std::int64_t dim) {
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    std::copy_n(table + static_cast<std::int64_t>(tokens[r]) * dim, dim, y + r * dim);
  }
}

template <typename T>
void embedding_backward(const std::int32_t* tokens, const T* dy, T* dtable, std::int64_t rows,
                        std::int64_t dim) {
  // Serial in row order: rows sharing a token add into the same table row, and a fixed order
  // keeps the sum bitwise reproducible.
  for (std::int64_t r = 0; r < rows; ++r) {
    T* out = dtable + static_cast<std::int64_t>(tokens[r]) * dim;
    const T* in = dy + r * dim;
    for (std::int64_t i = 0; i < dim; ++i) out[i] += in[i];
  }
}

#define LH_INSTANTIATE(T)                                                              \
  template void embedding_forward<T>(const std::int32_t*, const T*, T*, std::int64_t,  \
                                     std::int64_t);                                    \
  template void embedding_backward<T>(const std::int32_t*, const T*, T*, std::int64_t, \
                                      std::int64_t);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lighthouse::train
