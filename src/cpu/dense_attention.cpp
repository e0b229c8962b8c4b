// TEMPORARY naive implementation (row by row, double accumulation) until the tiled kernel lands.
#include "cpu/dense_attention.hpp"

#include <cmath>
#include <vector>

namespace lighthouse::cpu {

template <typename T>
void causal_attention_forward(std::span<const AttentionHead<T>> heads, std::int64_t S,
                              std::int64_t D, std::int64_t ld, T scale, int threads) {
#pragma omp parallel for num_threads(threads)
  for (std::size_t h = 0; h < heads.size(); ++h) {
    const auto& a = heads[h];
    std::vector<double> logit(S), acc(D);
    for (std::int64_t i = 0; i < S; ++i) {
      double m = -INFINITY;
      for (std::int64_t j = 0; j <= i; ++j) {
        double s = 0;
        for (std::int64_t d = 0; d < D; ++d) s += (double)a.q[i * ld + d] * a.k[j * ld + d];
        logit[j] = s * scale;
        m = std::max(m, logit[j]);
      }
      double sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (std::int64_t j = 0; j <= i; ++j) {
        double p = std::exp(logit[j] - m);
        sum += p;
        for (std::int64_t d = 0; d < D; ++d) acc[d] += p * a.v[j * ld + d];
      }
      for (std::int64_t d = 0; d < D; ++d) a.o[i * ld + d] = (T)(acc[d] / sum);
      a.lse[i] = (T)(m + std::log(sum));
    }
  }
}

template <typename T>
void causal_attention_backward(std::span<const AttentionGradHead<T>> heads, std::int64_t S,
                               std::int64_t D, std::int64_t ld, T scale, int threads) {
#pragma omp parallel for num_threads(threads)
  for (std::size_t h = 0; h < heads.size(); ++h) {
    const auto& a = heads[h];
    std::vector<double> dq(S * D, 0.0), dk(S * D, 0.0), dv(S * D, 0.0);
    for (std::int64_t i = 0; i < S; ++i) {
      double delta = 0;
      for (std::int64_t d = 0; d < D; ++d) delta += (double)a.dout[i * ld + d] * a.o[i * ld + d];
      for (std::int64_t j = 0; j <= i; ++j) {
        double s = 0, dp = 0;
        for (std::int64_t d = 0; d < D; ++d) {
          s += (double)a.q[i * ld + d] * a.k[j * ld + d];
          dp += (double)a.dout[i * ld + d] * a.v[j * ld + d];
        }
        const double p = std::exp(s * scale - (double)a.lse[i]);
        const double ds = p * (dp - delta) * scale;
        for (std::int64_t d = 0; d < D; ++d) {
          dv[j * D + d] += p * a.dout[i * ld + d];
          dq[i * D + d] += ds * a.k[j * ld + d];
          dk[j * D + d] += ds * a.q[i * ld + d];
        }
      }
    }
    for (std::int64_t i = 0; i < S; ++i)
      for (std::int64_t d = 0; d < D; ++d) {
        a.dq[i * ld + d] = (T)dq[i * D + d];
        a.dk[i * ld + d] = (T)dk[i * D + d];
        a.dv[i * ld + d] = (T)dv[i * D + d];
      }
  }
}

template void causal_attention_forward<float>(std::span<const AttentionHead<float>>, std::int64_t,
                                              std::int64_t, std::int64_t, float, int);
template void causal_attention_forward<double>(std::span<const AttentionHead<double>>, std::int64_t,
                                               std::int64_t, std::int64_t, double, int);
template void causal_attention_backward<float>(std::span<const AttentionGradHead<float>>,
                                               std::int64_t, std::int64_t, std::int64_t, float,
                                               int);
template void causal_attention_backward<double>(std::span<const AttentionGradHead<double>>,
                                                std::int64_t, std::int64_t, std::int64_t, double,
                                                int);

}  // namespace lighthouse::cpu
