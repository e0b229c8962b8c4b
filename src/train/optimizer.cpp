#include "train/optimizer.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "lighthouse/error.hpp"

namespace lighthouse::train {

void AdamWConfig::validate() const {
  auto in01 = [](const char* name, double v) {
    if (!(v >= 0.0 && v < 1.0)) throw InvalidArgument(name, std::to_string(v), "must be in [0, 1)");
  };
  in01("beta1", beta1);
  in01("beta2", beta2);
  if (!(eps > 0.0)) throw InvalidArgument("eps", std::to_string(eps), "must be > 0");
  if (!(weight_decay >= 0.0)) {
    throw InvalidArgument("weight_decay", std::to_string(weight_decay), "must be >= 0");
  }
}

template <typename T>
AdamW<T>::AdamW(const AdamWConfig& config, const std::vector<Param<T>>& params) : config_(config) {
  config_.validate();
  for (const Param<T>& p : params) {
    m_.emplace_back(p.value.size(), T(0));
    v_.emplace_back(p.value.size(), T(0));
  }
}

template <typename T>
void AdamW<T>::step(std::vector<Param<T>>& params, double lr) {
  ++steps_;
  const double b1 = config_.beta1, b2 = config_.beta2;
  const double c1 = 1.0 - std::pow(b1, static_cast<double>(steps_));
  const double c2 = 1.0 - std::pow(b2, static_cast<double>(steps_));
  for (std::size_t i = 0; i < params.size(); ++i) {
    Param<T>& p = params[i];
    T* m = m_[i].data();
    T* v = v_[i].data();
    const double decay = p.decay ? lr * config_.weight_decay : 0.0;
    const auto n = static_cast<std::int64_t>(p.value.size());
#pragma omp parallel for schedule(static)
    for (std::int64_t j = 0; j < n; ++j) {
      const double g = p.grad[j];
      const double mj = b1 * m[j] + (1.0 - b1) * g;
      const double vj = b2 * v[j] + (1.0 - b2) * g * g;
      m[j] = static_cast<T>(mj);
      v[j] = static_cast<T>(vj);
      const double update = (mj / c1) / (std::sqrt(vj / c2) + config_.eps);
      p.value[j] = static_cast<T>(p.value[j] - decay * p.value[j] - lr * update);
    }
  }
}

template <typename T>
double clip_grad_norm(std::vector<Param<T>>& params, double max_norm) {
  double ss = 0;
  for (const Param<T>& p : params) {
    for (T g : p.grad) ss += static_cast<double>(g) * g;
  }
  const double norm = std::sqrt(ss);
  if (max_norm > 0 && norm > max_norm) {
    const T scale = static_cast<T>(max_norm / (norm + 1e-12));
    for (Param<T>& p : params) {
      for (T& g : p.grad) g *= scale;
    }
  }
  return norm;
}

Decay parse_decay(const std::string& text, const char* param) {
  if (text == "cosine") return Decay::kCosine;
  if (text == "linear") return Decay::kLinear;
  if (text == "constant") return Decay::kConstant;
  if (text == "wsd") return Decay::kWsd;
  throw InvalidArgument(param, text, "must be cosine, linear, constant or wsd");
}

double Schedule::at(std::int64_t step) const {
  if (step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (decay == Decay::kWsd) {
    const auto steps =
        std::max<std::int64_t>(1, std::llround(cooldown * static_cast<double>(total)));
    const std::int64_t start = total - steps;
    if (step < start) return lr;
    const double progress =
        steps <= 1
            ? 1.0
            : std::min(1.0, static_cast<double>(step - start) / static_cast<double>(steps - 1));
    return lr + (min_ratio * lr - lr) * progress;
  }
  const std::int64_t span = total - warmup;
  const double progress =
      span <= 1 ? 1.0
                : std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(span - 1));
  const double floor = min_ratio * lr;
  switch (decay) {
    case Decay::kCosine:
      return floor + (lr - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    case Decay::kLinear:
      return lr + (floor - lr) * progress;
    case Decay::kConstant:
    case Decay::kWsd:
      break;
  }
  return lr;
}

void Schedule::validate() const {
  if (!(lr > 0.0 && std::isfinite(lr)))
    throw InvalidArgument("lr", std::to_string(lr), "must be > 0");
  if (warmup < 0) throw InvalidArgument("warmup", std::to_string(warmup), "must be >= 0");
  if (total < 1) throw InvalidArgument("total steps", std::to_string(total), "must be >= 1");
  if (!(cooldown > 0.0 && cooldown <= 1.0)) {
    throw InvalidArgument("cooldown", std::to_string(cooldown), "must be in (0, 1]");
  }
  if (!(min_ratio >= 0.0 && min_ratio <= 1.0)) {
    throw InvalidArgument("min_lr_ratio", std::to_string(min_ratio), "must be in [0, 1]");
  }
}

template class AdamW<float>;
template class AdamW<double>;
template double clip_grad_norm<float>(std::vector<Param<float>>&, double);
template double clip_grad_norm<double>(std::vector<Param<double>>&, double);

}  // namespace lighthouse::train
