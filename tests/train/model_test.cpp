// Finite-difference checks of the whole model's backward pass (float64), dense and with
// Lighthouse layers, tied and untied heads, at a few random coordinates of every parameter.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "lighthouse/error.hpp"
#include "train/model.hpp"
#include "train/rng.hpp"

namespace {

using lighthouse::Config;
using lighthouse::train::Model;
using lighthouse::train::ModelConfig;

std::vector<std::int32_t> random_tokens(std::size_t n, int vocab, std::uint64_t seed) {
  lighthouse::train::Rng rng(seed);
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(vocab)));
  return t;
}

// Checks `coords` random coordinates of every parameter; returns the worst relative error.
double check_model(Model<double>& model, std::int64_t batch, std::int64_t seq, int coords) {
  const int V = model.config().vocab;
  const auto n = static_cast<std::size_t>(batch * seq);
  const auto inputs = random_tokens(n, V, 11);
  auto targets = random_tokens(n, V, 12);
  targets[1] = -1;  // an ignored position
  model.zero_grad();
  model.forward(inputs.data(), targets.data(), batch, seq);
  model.backward(1.0);
  lighthouse::train::Rng rng(13);
  double worst = 0;
  for (auto& p : model.params()) {
    for (int c = 0; c < coords; ++c) {
      const std::size_t i = rng.below(p.value.size());
      const double saved = p.value[i];
      constexpr double h = 1e-5;
      p.value[i] = saved + h;
      const double fp = model.forward(inputs.data(), targets.data(), batch, seq);
      p.value[i] = saved - h;
      const double fm = model.forward(inputs.data(), targets.data(), batch, seq);
      p.value[i] = saved;
      const double numeric = (fp - fm) / (2 * h);
      const double err = std::abs(p.grad[i] - numeric) / std::max(std::abs(numeric), 1e-6);
      EXPECT_LT(err, 1e-4) << p.name << "[" << i << "] analytic " << p.grad[i] << " numeric "
                           << numeric;
      worst = std::max(worst, err);
    }
  }
  return worst;
}

ModelConfig tiny(bool tied) {
  ModelConfig c;
  c.dim = 8;
  c.heads = 2;
  c.layers = 2;
  c.hidden = 12;
  c.tied = tied;
  c.init_std = 0.5;  // large weights: gradients well above rounding noise
  return c;
}

TEST(TrainModel, DenseGradientsTiedHead) {
  Model<double> model(tiny(true), 1, lighthouse::train::make_cpu_attention(1));
  EXPECT_LT(check_model(model, 2, 8, 4), 1e-4);
}

TEST(TrainModel, DenseGradientsUntiedHead) {
  Model<double> model(tiny(false), 2, lighthouse::train::make_cpu_attention(1));
  EXPECT_LT(check_model(model, 2, 8, 4), 1e-4);
}

// Layer 0 Lighthouse (2 levels, pool 2, topk 128: the smallest legal shape is seq 256), layer 1
// dense. The selection is piecewise constant in the weights; these tiny steps do not cross it.
TEST(TrainModel, LighthouseGradients) {
  Model<double> model(tiny(true), 3, lighthouse::train::make_cpu_attention(2));
  Config lh;
  lh.levels = 2;
  lh.pool = 2;
  lh.topk = 128;
  model.set_attention(lighthouse::train::layer_attention(2, lh, {1}));
  EXPECT_EQ(model.attention()[0].levels, 2);
  EXPECT_EQ(model.attention()[1].levels, 1);
  EXPECT_LT(check_model(model, 1, 256, 3), 1e-4);
}

// Lighthouse output differs from dense on the same weights (it really is used).
TEST(TrainModel, LighthouseChangesTheLoss) {
  Model<double> model(tiny(true), 4, lighthouse::train::make_cpu_attention(2));
  const auto inputs = random_tokens(256, 257, 1), targets = random_tokens(256, 257, 2);
  const double dense = model.forward(inputs.data(), targets.data(), 1, 256);
  Config lh;
  lh.levels = 2;
  lh.pool = 2;
  lh.topk = 128;
  model.set_attention(lighthouse::train::layer_attention(2, lh, {}));
  const double sparse = model.forward(inputs.data(), targets.data(), 1, 256);
  EXPECT_NE(dense, sparse);
  EXPECT_GT(model.backend().seconds().lighthouse, 0.0);
}

// Grouped-query attention (--kv-heads): 4 query heads on 2 and on 1 KV heads (head_dim 2), the
// fused projection narrows to dim + 2 kv_heads head_dim columns; gradients dense and Lighthouse.
TEST(TrainModel, GroupedQueryGradients) {
  for (const int kv_heads : {2, 1}) {
    ModelConfig c = tiny(true);
    c.heads = 4;
    c.kv_heads = kv_heads;
    Model<double> model(c, 6, lighthouse::train::make_cpu_attention(2));
    for (const auto& p : model.params()) {
      if (p.name == "layers.0.wqkv") {
        EXPECT_EQ(p.shape, (std::vector<std::int64_t>{8, 8 + 2 * kv_heads * 2}));
      }
    }
    Config lh;
    lh.levels = 2;
    lh.pool = 2;
    lh.topk = 128;
    model.set_attention(lighthouse::train::layer_attention(2, lh, {1}));
    EXPECT_LT(check_model(model, 1, 256, 3), 1e-4) << "kv_heads " << kv_heads;
  }
  ModelConfig bad = tiny(true);
  bad.kv_heads = 3;  // does not divide heads = 2
  EXPECT_THROW(bad.validate(), lighthouse::InvalidArgument);
}

TEST(TrainModel, DefaultDenseLayers) {
  EXPECT_TRUE(lighthouse::train::default_dense_layers(2).empty());
  EXPECT_EQ(lighthouse::train::default_dense_layers(3), (std::vector<int>{2}));
  EXPECT_EQ(lighthouse::train::default_dense_layers(4), (std::vector<int>{3}));
  EXPECT_EQ(lighthouse::train::default_dense_layers(6), (std::vector<int>{0, 1, 4, 5}));
  EXPECT_THROW(lighthouse::train::layer_attention(4, Config{}, {4}), lighthouse::InvalidArgument);
}

TEST(TrainModel, RejectsBadConfigsAndTokens) {
  ModelConfig c = tiny(true);
  c.dim = 9;
  EXPECT_THROW(c.validate(), lighthouse::InvalidArgument);
  c = tiny(true);
  c.heads = 8;  // head_dim 1: odd
  EXPECT_THROW(c.validate(), lighthouse::InvalidArgument);
  Model<float> model(tiny(true), 1, lighthouse::train::make_cpu_attention(1));
  std::vector<std::int32_t> in(8, 300), tg(8, 1);
  EXPECT_THROW(model.forward(in.data(), tg.data(), 1, 8), lighthouse::InvalidArgument);
}

TEST(TrainModel, FloatMatchesDouble) {
  Model<double> md(tiny(true), 5, lighthouse::train::make_cpu_attention(1));
  Model<float> mf(tiny(true), 5, lighthouse::train::make_cpu_attention(1));
  const auto inputs = random_tokens(32, 257, 3), targets = random_tokens(32, 257, 4);
  EXPECT_NEAR(mf.forward(inputs.data(), targets.data(), 2, 16),
              md.forward(inputs.data(), targets.data(), 2, 16), 1e-4);
}

}  // namespace
