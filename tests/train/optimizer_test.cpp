// AdamW, gradient clipping and the learning-rate schedule against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "lighthouse/error.hpp"
#include "train/optimizer.hpp"

namespace {

using lighthouse::train::AdamW;
using lighthouse::train::AdamWConfig;
using lighthouse::train::Decay;
using lighthouse::train::Param;
using lighthouse::train::Schedule;

std::vector<Param<double>> two_params() {
  std::vector<Param<double>> p(2);
  p[0].name = "matrix";
  p[0].value = {1.0, -2.0};
  p[0].grad = {0.5, -0.25};
  p[0].decay = true;
  p[1].name = "gain";
  p[1].value = {3.0};
  p[1].grad = {0.0};
  p[1].decay = false;
  return p;
}

TEST(TrainOptimizer, AdamWFirstStepsMatchTheFormula) {
  auto params = two_params();
  AdamWConfig cfg;  // 0.9, 0.95, 1e-8, 0.1
  AdamW<double> opt(cfg, params);
  const double lr = 0.01;
  opt.step(params, lr);
  // Step 1: m_hat = g, v_hat = g^2, so the update is g / (|g| + eps) = sign(g) (up to eps).
  EXPECT_NEAR(params[0].value[0], 1.0 - lr * 0.1 * 1.0 - lr * 0.5 / (0.5 + 1e-8), 1e-15);
  EXPECT_NEAR(params[0].value[1], -2.0 - lr * 0.1 * -2.0 + lr * 0.25 / (0.25 + 1e-8), 1e-15);
  EXPECT_EQ(params[1].value[0], 3.0);  // zero gradient, no decay: unchanged
  // Step 2 with a different gradient, against the bias-corrected moments.
  const double w = params[0].value[0];
  params[0].grad = {-0.5, 0.0};
  opt.step(params, lr);
  const double m = 0.9 * 0.1 * 0.5 + 0.1 * -0.5, v = 0.95 * 0.05 * 0.25 + 0.05 * 0.25;
  const double mhat = m / (1 - 0.81), vhat = v / (1 - 0.9025);
  EXPECT_NEAR(params[0].value[0], w - lr * 0.1 * w - lr * mhat / (std::sqrt(vhat) + 1e-8), 1e-14);
  EXPECT_EQ(opt.steps(), 2);
}

TEST(TrainOptimizer, ClipGradNorm) {
  auto params = two_params();
  params[1].grad = {std::sqrt(1.0 - 0.3125)};  // global norm 1
  EXPECT_NEAR(lighthouse::train::clip_grad_norm(params, 2.0), 1.0, 1e-15);
  EXPECT_EQ(params[0].grad[0], 0.5);  // under the limit: untouched
  EXPECT_NEAR(lighthouse::train::clip_grad_norm(params, 0.5), 1.0, 1e-15);
  EXPECT_NEAR(params[0].grad[0], 0.25, 1e-12);
  EXPECT_NEAR(lighthouse::train::clip_grad_norm(params, 0.0), 0.5, 1e-12);  // reports only
}

TEST(TrainOptimizer, ScheduleWarmupCosineLinear) {
  Schedule s{.lr = 1.0, .warmup = 4, .total = 14, .decay = Decay::kCosine, .min_ratio = 0.1};
  EXPECT_DOUBLE_EQ(s.at(0), 0.25);
  EXPECT_DOUBLE_EQ(s.at(3), 1.0);
  EXPECT_DOUBLE_EQ(s.at(4), 1.0);     // decay starts at the peak
  EXPECT_NEAR(s.at(13), 0.1, 1e-15);  // and ends at the floor on the last step
  EXPECT_NEAR(s.at(8), 0.1 + 0.9 * 0.5 * (1 + std::cos(3.141592653589793 * 4 / 9)), 1e-15);
  EXPECT_GT(s.at(6), s.at(7));
  s.decay = Decay::kLinear;
  EXPECT_NEAR(s.at(13), 0.1, 1e-15);
  EXPECT_NEAR(s.at(7), 1.0 - 0.9 * 3.0 / 9.0, 1e-15);
  s.decay = Decay::kConstant;
  EXPECT_DOUBLE_EQ(s.at(13), 1.0);
  // wsd, cooldown 0.5 of 14 steps: the peak until step 7, then linear to 0.1 at step 13.
  s.decay = Decay::kWsd;
  s.cooldown = 0.5;
  EXPECT_DOUBLE_EQ(s.at(6), 1.0);
  EXPECT_DOUBLE_EQ(s.at(7), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0 - 0.9 * 3.0 / 6.0);
  EXPECT_DOUBLE_EQ(s.at(13), 0.1);
  EXPECT_DOUBLE_EQ(s.at(1), 0.5);  // the warmup comes first
  EXPECT_EQ(lighthouse::train::parse_decay("wsd"), Decay::kWsd);
  s.cooldown = 0.0;
  EXPECT_THROW(s.validate(), lighthouse::InvalidArgument);
  EXPECT_THROW(lighthouse::train::parse_decay("exp"), lighthouse::InvalidArgument);
  s.lr = -1;
  EXPECT_THROW(s.validate(), lighthouse::InvalidArgument);
}

TEST(TrainOptimizer, RejectsBadHyperParameters) {
  AdamWConfig c;
  c.beta2 = 1.0;
  EXPECT_THROW(c.validate(), lighthouse::InvalidArgument);
  c = {};
  c.weight_decay = -0.1;
  EXPECT_THROW(c.validate(), lighthouse::InvalidArgument);
}

}  // namespace
