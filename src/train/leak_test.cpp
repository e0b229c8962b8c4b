#include "train/leak_test.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "lighthouse/error.hpp"
#include "train/attention_backend.hpp"
#include "train/layers.hpp"
#include "train/rng.hpp"

namespace lighthouse::train {

namespace {

// n independent uniform bytes from `seed` (never the separator: the data is bytes only).
TokenStream random_bytes(std::int64_t n, std::uint64_t seed) {
  Rng rng(seed);
  TokenStream out(static_cast<std::size_t>(n));
  for (auto& t : out) t = static_cast<std::int32_t>(rng.below(256));
  return out;
}

// Mean and 95% interval of the per-token held-out losses of `model` under `attention`: every
// position of every held-out sequence counts.
LossInterval heldout_losses(LanguageModel& model, const std::vector<Config>& attention,
                            const TokenStream& heldout, std::int64_t seq, std::int64_t sequences) {
  model.set_attention(attention);
  Packer packer(&heldout, seq);
  std::vector<std::int32_t> inputs(static_cast<std::size_t>(seq)), targets(inputs.size());
  std::vector<double> losses(inputs.size());
  double sum = 0, sum_sq = 0;
  std::int64_t count = 0;
  for (std::int64_t s = 0; s < sequences; ++s) {
    packer.next(1, inputs.data(), targets.data());
    model.evaluate(inputs.data(), targets.data(), 1, seq, losses.data());
    for (const double loss : losses) {
      sum += loss;
      sum_sq += loss * loss;
      ++count;
    }
  }
  LossInterval r;
  r.tokens = count;
  r.mean = sum / static_cast<double>(count);
  const double var = (sum_sq - sum * r.mean) / static_cast<double>(count - 1);
  r.ci95 = 1.96 * std::sqrt(std::max(var, 0.0) / static_cast<double>(count));
  return r;
}

}  // namespace

double LossInterval::excess() const {
  return mean - kByteEntropy;
}

LeakTestResult run_leak_test(const LeakTestConfig& config,
                             const std::function<void(std::int64_t, std::int64_t)>& progress) {
  const TrainConfig& c = config.train;
  if (c.stage2_steps != 0) {
    throw InvalidArgument("stage2_steps", std::to_string(c.stage2_steps),
                          "must be 0 in the leak test (it trains under one attention)");
  }
  if (c.stage1_steps < 1) {
    throw InvalidArgument("steps", std::to_string(c.stage1_steps), "must be >= 1");
  }
  if (config.eval_tokens < 2) {
    throw InvalidArgument("eval_tokens", std::to_string(config.eval_tokens), "must be >= 2");
  }
  c.validate();
  const auto start = std::chrono::steady_clock::now();
  // Fresh bytes for every training step (the packer never wraps) and separate held-out bytes.
  const std::int64_t sequences = (config.eval_tokens + c.seq - 1) / c.seq;
  const TokenStream train =
      random_bytes(c.stage1_steps * c.batch * c.accum * c.seq + 1, c.seed ^ 0x7472616e64ull);
  const TokenStream heldout = random_bytes(sequences * c.seq + 1, c.seed ^ 0x68656c64ull);

  Trainer trainer = config.make_model
                        ? Trainer(c, &train, &heldout, config.make_model(c))
                        : Trainer(c, &train, &heldout, make_cpu_attention(c.threads));
  LeakTestResult r;
  while (!trainer.done()) {
    r.final_train_loss = trainer.step().loss;
    if (progress) progress(trainer.step_count(), trainer.total_steps());
  }
  LanguageModel& model = trainer.model();
  r.lighthouse = heldout_losses(model, trainer.stage1_attention(), heldout, c.seq, sequences);
  r.dense = heldout_losses(model, all_dense(c.model.layers), heldout, c.seq, sequences);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace lighthouse::train
