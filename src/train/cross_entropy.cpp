#include <algorithm>
#include <cmath>
#include <vector>

#include "train/layers.hpp"

namespace lighthouse::train {

template <typename T>
double cross_entropy(const T* logits, const std::int32_t* targets, std::int64_t rows,
                     std::int64_t vocab, T* dlogits, double scale) {
  std::int64_t counted = 0;
  for (std::int64_t r = 0; r < rows; ++r) counted += targets[r] >= 0;
  if (counted == 0) return 0.0;
  double total = 0;
  // Per-row losses are summed in row order after the parallel loop: reproducible bits.
  std::vector<double> row_loss(static_cast<std::size_t>(rows), 0.0);
  const double grad_scale = scale / static_cast<double>(counted);
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* z = logits + r * vocab;
    const std::int32_t t = targets[r];
    double mx = z[0];
    for (std::int64_t i = 1; i < vocab; ++i) mx = std::max(mx, static_cast<double>(z[i]));
    double sum = 0;
    for (std::int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(z[i]) - mx);
    const double lse = mx + std::log(sum);
    if (t >= 0) row_loss[static_cast<std::size_t>(r)] = lse - static_cast<double>(z[t]);
    if (dlogits != nullptr) {
      T* d = dlogits + r * vocab;
      for (std::int64_t i = 0; i < vocab; ++i) {
        const double p = std::exp(static_cast<double>(z[i]) - lse);
        d[i] = t >= 0 ? static_cast<T>(grad_scale * (p - (i == t ? 1.0 : 0.0))) : T(0);
      }
    }
  }
  for (double l : row_loss) total += l;
  return total / static_cast<double>(counted);
}

template double cross_entropy<float>(const float*, const std::int32_t*, std::int64_t, std::int64_t,
                                     float*, double);
template double cross_entropy<double>(const double*, const std::int32_t*, std::int64_t,
                                      std::int64_t, double*, double);

}  // namespace lighthouse::train
