// The leak test (issue 11): train a small model on independent uniform random bytes, whose
// entropy is ln 256 nats per byte, under a given attention, then measure its held-out loss under
// that attention and under dense attention. No causal predictor of such data can do better than
// ln 256 on average (cross-entropy = entropy + KL >= entropy, for every position), so a held-out
// loss clearly below ln 256 means the attention lets a position read the byte it must predict.
// Measured this way, the original selection leaks; selection = causal must not.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "train/trainer.hpp"

namespace lighthouse::train {

struct LeakTestConfig {
  // The model, the attention under test (config.lighthouse, config.dense_layers; stage 1 of
  // config), the optimizer and the seed. steps = config.stage1_steps; stage2_steps must be 0.
  TrainConfig train;
  std::int64_t eval_tokens = 65536;  // held-out positions scored (whole sequences, rounded up)
  // The model to train (e.g. make_cuda_model); empty: the CPU model from train.seed.
  std::function<std::unique_ptr<LanguageModel>(const TrainConfig&)> make_model;
};

struct LossInterval {
  double mean = 0;  // mean held-out loss (nats per byte)
  double ci95 = 0;  // half-width of the 95% interval of the mean (normal approximation)
  std::int64_t tokens = 0;
  double excess() const;  // mean - ln 256: negative = better than the entropy of the data
  bool below_entropy() const { return excess() + ci95 < 0; }  // the whole interval below
};

struct LeakTestResult {
  LossInterval lighthouse;  // under the attention trained with
  LossInterval dense;       // the same weights, dense attention in every layer
  double final_train_loss = 0;
  double seconds = 0;
  bool leaks() const { return lighthouse.below_entropy(); }
};

inline constexpr double kByteEntropy = 5.545177444479562;  // ln 256

// Trains and evaluates; `progress(step, total)` is called after each step when given. Throws
// InvalidArgument for a bad configuration (stage2_steps != 0, eval_tokens < 2, or what
// TrainConfig::validate rejects).
LeakTestResult run_leak_test(const LeakTestConfig& config,
                             const std::function<void(std::int64_t, std::int64_t)>& progress = {});

}  // namespace lighthouse::train
