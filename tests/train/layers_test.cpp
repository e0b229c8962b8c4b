// Finite-difference checks of each layer's hand-written backward pass, in float64. Each loss is
// <layer output, w> for a fixed random w, so the analytic gradient comes from backward(dy = w).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "train/layers.hpp"
#include "train/rng.hpp"

namespace {

using lighthouse::train::Rng;
using Vec = std::vector<double>;

Vec random_vec(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  Vec v(n);
  for (double& x : v) x = scale * rng.normal();
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Largest |analytic - numeric| / max(|numeric|, floor) over every coordinate of `x`, using a
// central difference of `loss` (which reads x).
double max_rel_error(Vec& x, const Vec& analytic, const std::function<double()>& loss,
                     double floor = 1e-6) {
  constexpr double h = 1e-6;
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double fp = loss();
    x[i] = saved - h;
    const double fm = loss();
    x[i] = saved;
    const double numeric = (fp - fm) / (2 * h);
    worst = std::max(worst, std::abs(analytic[i] - numeric) / std::max(std::abs(numeric), floor));
  }
  return worst;
}

TEST(TrainLayers, RmsNormGradients) {
  const std::int64_t rows = 3, dim = 7;
  Vec x = random_vec(rows * dim, 1), gain = random_vec(dim, 2), w = random_vec(rows * dim, 3);
  Vec y(rows * dim), inv(rows);
  auto loss = [&] {
    lighthouse::train::rmsnorm_forward<double>(x.data(), gain.data(), y.data(), inv.data(), rows,
                                               dim, 1e-5);
    return dot(y, w);
  };
  loss();
  Vec dx(rows * dim, 0.5), dgain(dim, 0.25);  // non-zero: backward must add, not overwrite
  lighthouse::train::rmsnorm_backward<double>(x.data(), gain.data(), inv.data(), w.data(),
                                              dx.data(), dgain.data(), rows, dim);
  for (double& v : dx) v -= 0.5;
  for (double& v : dgain) v -= 0.25;
  EXPECT_LT(max_rel_error(x, dx, loss), 1e-6);
  EXPECT_LT(max_rel_error(gain, dgain, loss), 1e-6);
}

TEST(TrainLayers, RmsNormNormalises) {
  const Vec x = {3.0, -4.0}, gain = {1.0, 2.0};
  Vec y(2), inv(1);
  lighthouse::train::rmsnorm_forward<double>(x.data(), gain.data(), y.data(), inv.data(), 1, 2,
                                             0.0);
  const double rms = std::sqrt((9.0 + 16.0) / 2.0);
  EXPECT_NEAR(y[0], 3.0 / rms, 1e-12);
  EXPECT_NEAR(y[1], -8.0 / rms, 1e-12);
}

TEST(TrainLayers, RotaryIsARotationAndItsInverseIsTheBackward) {
  const std::int64_t B = 2, N = 5, H = 3, D = 4, stride = 2 * H * D;  // rows wider than q
  Vec cos(N * D / 2), sin(N * D / 2);
  lighthouse::train::rotary_tables<double>(N, D, 10000.0, cos.data(), sin.data());
  EXPECT_DOUBLE_EQ(cos[0], 1.0);  // position 0 is not rotated
  EXPECT_DOUBLE_EQ(sin[1], 0.0);
  EXPECT_NEAR(cos[1 * D / 2 + 0], std::cos(1.0), 1e-15);   // position 1, frequency 1
  EXPECT_NEAR(sin[1 * D / 2 + 1], std::sin(0.01), 1e-15);  // frequency 10000^(-2/4)

  const Vec x0 = random_vec(B * N * stride, 4);
  Vec x = x0;
  lighthouse::train::rotary_apply<double>(x.data(), B, N, H, D, stride, cos.data(), sin.data(),
                                          false);
  // Norms of each pair are kept; entries beyond the H*D columns are untouched.
  double n0 = 0, n1 = 0;
  for (std::int64_t r = 0; r < B * N; ++r) {
    for (std::int64_t i = 0; i < H * D; ++i) {
      n0 += x0[r * stride + i] * x0[r * stride + i];
      n1 += x[r * stride + i] * x[r * stride + i];
    }
    for (std::int64_t i = H * D; i < stride; ++i) EXPECT_EQ(x[r * stride + i], x0[r * stride + i]);
  }
  EXPECT_NEAR(n0, n1, 1e-10);
  EXPECT_NE(x, x0);
  // Adjoint: <R a, b> == <a, R^T b>.
  const Vec b = random_vec(B * N * stride, 5);
  Vec rtb = b;
  lighthouse::train::rotary_apply<double>(rtb.data(), B, N, H, D, stride, cos.data(), sin.data(),
                                          true);
  EXPECT_NEAR(dot(x, b), dot(x0, rtb), 1e-10);
  // Inverse undoes forward.
  lighthouse::train::rotary_apply<double>(x.data(), B, N, H, D, stride, cos.data(), sin.data(),
                                          true);
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], x0[i], 1e-12);
}

TEST(TrainLayers, SwiGluGradients) {
  const std::int64_t rows = 3, hidden = 5;
  Vec hg = random_vec(rows * 2 * hidden, 6, 2.0), w = random_vec(rows * hidden, 7);
  Vec a(rows * hidden), dhg(rows * 2 * hidden);
  auto loss = [&] {
    lighthouse::train::swiglu_forward<double>(hg.data(), a.data(), rows, hidden);
    return dot(a, w);
  };
  loss();
  lighthouse::train::swiglu_backward<double>(hg.data(), w.data(), dhg.data(), rows, hidden);
  EXPECT_LT(max_rel_error(hg, dhg, loss), 1e-6);
}

TEST(TrainLayers, CrossEntropyValueAndGradients) {
  const std::int64_t rows = 4, vocab = 6;
  Vec logits = random_vec(rows * vocab, 8, 3.0);
  const std::vector<std::int32_t> targets = {0, 5, -1, 2};  // row 2 is ignored
  Vec d(rows * vocab);
  const double l = lighthouse::train::cross_entropy<double>(logits.data(), targets.data(), rows,
                                                            vocab, d.data(), 2.0);
  // Direct restatement of the mean over the three counted rows.
  double want = 0;
  for (std::int64_t r : {0, 1, 3}) {
    double sum = 0;
    for (std::int64_t i = 0; i < vocab; ++i) sum += std::exp(logits[r * vocab + i]);
    want += std::log(sum) - logits[r * vocab + targets[r]];
  }
  EXPECT_NEAR(l, want / 3, 1e-12);
  for (std::int64_t i = 0; i < vocab; ++i) EXPECT_EQ(d[2 * vocab + i], 0.0);
  for (double& v : d) v /= 2.0;  // the scale
  auto loss = [&] {
    return lighthouse::train::cross_entropy<double>(logits.data(), targets.data(), rows, vocab,
                                                    nullptr, 1.0);
  };
  EXPECT_LT(max_rel_error(logits, d, loss), 1e-6);
}

TEST(TrainLayers, EmbeddingLooksUpAndScattersGradients) {
  const std::int64_t dim = 3;
  const Vec table = {0, 1, 2, 10, 11, 12, 20, 21, 22};
  const std::vector<std::int32_t> tokens = {2, 0, 2};
  Vec y(3 * dim);
  lighthouse::train::embedding_forward<double>(tokens.data(), table.data(), y.data(), 3, dim);
  EXPECT_EQ(y, (Vec{20, 21, 22, 0, 1, 2, 20, 21, 22}));
  const Vec dy = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  Vec dtable(9, 1.0);
  lighthouse::train::embedding_backward<double>(tokens.data(), dy.data(), dtable.data(), 3, dim);
  EXPECT_EQ(dtable, (Vec{5, 6, 7, 1, 1, 1, 9, 11, 13}));
}

}  // namespace
