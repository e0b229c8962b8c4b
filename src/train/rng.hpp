// The trainer's random numbers: splitmix64 with a spelled-out normal (Box-Muller), so that a seed
// names the same initial weights and data on every machine and standard library, and the whole
// generator state is one integer (easy to checkpoint).
#pragma once

#include <cmath>
#include <cstdint>

namespace lighthouse::train {

class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0)
      : state_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}

  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]: the log is finite
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Uniform in [0, n), n >= 1 (the modulo bias is below 2^-40 for the small n used here).
  std::uint64_t below(std::uint64_t n) { return next() % n; }

  std::uint64_t state() const { return state_; }
  void set_state(std::uint64_t state) { state_ = state; }

 private:
  std::uint64_t state_;
};

}  // namespace lighthouse::train
