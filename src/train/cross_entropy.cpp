#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "math/fast_exp.hpp"
#include "train/layers.hpp"

namespace lighthouse::train {

template <typename T>
double cross_entropy(const T* logits, const std::int32_t* targets, std::int64_t rows,
                     std::int64_t vocab, T* dlogits, double scale, std::int64_t counted,
                     double* row_losses) {
  if (counted < 0) {
    counted = 0;
    for (std::int64_t r = 0; r < rows; ++r) counted += targets[r] >= 0;
  }
  if (counted == 0) {
    if (row_losses) std::fill_n(row_losses, rows, 0.0);
    return 0.0;
  }
  // Per-row losses are summed in row order after the parallel loop: reproducible bits.
  std::vector<double> row_loss(static_cast<std::size_t>(rows), 0.0);
  const double grad_scale = scale / static_cast<double>(counted);
  constexpr int kLanes = 8;  // partial sums: a fixed order that still vectorises
#pragma omp parallel
  {
    // exp(z - max) of one row, in double: the vectorisable exp2 (2 ulp), then a lane-wise sum.
    std::vector<double> e(static_cast<std::size_t>((vocab + kLanes - 1) / kLanes * kLanes), 0.0);
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* z = logits + r * vocab;
      const std::int32_t t = targets[r];
      double mx = z[0];
      for (std::int64_t i = 1; i < vocab; ++i) mx = std::max(mx, static_cast<double>(z[i]));
      for (std::int64_t i = 0; i < vocab; ++i) {
        e[static_cast<std::size_t>(i)] =
            cpu::fast_exp2((static_cast<double>(z[i]) - mx) * std::numbers::log2e);
      }
      double lanes[kLanes] = {};
      for (std::size_t i = 0; i < e.size(); i += kLanes) {
        for (int l = 0; l < kLanes; ++l) lanes[l] += e[i + static_cast<std::size_t>(l)];
      }
      double sum = 0;
      for (double l : lanes) sum += l;
      if (t >= 0) {
        row_loss[static_cast<std::size_t>(r)] = mx + std::log(sum) - static_cast<double>(z[t]);
      }
      if (dlogits != nullptr) {  // may alias logits: z is not read below
        T* d = dlogits + r * vocab;
        if (t < 0) {
          std::fill_n(d, vocab, T(0));
          continue;
        }
        const double p_scale = grad_scale / sum;  // softmax = e / sum
        for (std::int64_t i = 0; i < vocab; ++i) {
          d[i] = static_cast<T>(p_scale * e[static_cast<std::size_t>(i)]);
        }
        d[t] = static_cast<T>(grad_scale * (e[static_cast<std::size_t>(t)] / sum - 1.0));
      }
    }
  }
  if (row_losses) std::copy(row_loss.begin(), row_loss.end(), row_losses);
  double total = 0;
  for (double l : row_loss) total += l;
  return total / static_cast<double>(counted);
}

double token_loss(const float* logits, std::int64_t vocab, std::int32_t target) {
  double mx = logits[0];
  for (std::int64_t i = 1; i < vocab; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0;
  for (std::int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return mx + std::log(sum) - static_cast<double>(logits[target]);
}

template double cross_entropy<float>(const float*, const std::int32_t*, std::int64_t, std::int64_t,
                                     float*, double, std::int64_t, double*);
template double cross_entropy<double>(const double*, const std::int32_t*, std::int64_t,
                                      std::int64_t, double*, double, std::int64_t, double*);

}  // namespace lighthouse::train
