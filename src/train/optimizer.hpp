// AdamW with decoupled weight decay, global-norm gradient clipping and the learning-rate
// schedule (linear warmup, then cosine or linear decay to a floor).
//
// Defaults follow common LM practice: beta 0.9 / 0.95, eps 1e-8, weight decay 0.1 applied only
// to the matrices (Param::decay): norm gains and the embedding table (which the tied LM head
// shares) are not decayed, since shrinking them toward zero only fights the normalisation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/model.hpp"

namespace lighthouse::train {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
  void validate() const;  // InvalidArgument naming "beta1", "beta2", "eps" or "weight_decay"
};

template <typename T>
class AdamW {
 public:
  AdamW(const AdamWConfig& config, const std::vector<Param<T>>& params);
  // One update of every parameter from its gradient, at learning rate `lr`.
  void step(std::vector<Param<T>>& params, double lr);
  std::int64_t steps() const { return steps_; }
  // The whole state, for checkpoints: first and second moments (one vector per parameter, in
  // parameter order) and the number of updates done (the bias correction depends on it).
  std::vector<std::vector<T>>& first_moments() { return m_; }
  std::vector<std::vector<T>>& second_moments() { return v_; }
  const std::vector<std::vector<T>>& first_moments() const { return m_; }
  const std::vector<std::vector<T>>& second_moments() const { return v_; }
  void set_steps(std::int64_t steps) { steps_ = steps; }

 private:
  AdamWConfig config_;
  std::int64_t steps_ = 0;
  std::vector<std::vector<T>> m_, v_;  // first and second moments, one per parameter
};

// Scales every gradient so that their global L2 norm is at most max_norm (no-op when
// max_norm <= 0) and returns the norm before clipping.
template <typename T>
double clip_grad_norm(std::vector<Param<T>>& params, double max_norm);

// kWsd ("warmup-stable-decay"): the peak rate until the last `cooldown` fraction of the steps,
// then linear down to the floor. With the two-stage recipe and cooldown = the stage-2 share,
// stage 1 trains at the peak and the dense stage anneals.
enum class Decay { kCosine, kLinear, kConstant, kWsd };
Decay parse_decay(const std::string& text, const char* param = "decay");

struct Schedule {
  double lr = 3e-3;         // peak learning rate
  std::int64_t warmup = 0;  // steps of linear warmup from lr / warmup
  std::int64_t total = 1;   // steps in the whole run (both stages)
  Decay decay = Decay::kCosine;
  double min_ratio = 0.1;  // the decay ends at min_ratio * lr
  double cooldown = 0.2;   // kWsd: the fraction of `total` spent decaying, in (0, 1]

  double at(std::int64_t step) const;  // step counted from 0
  void validate() const;
};

}  // namespace lighthouse::train
