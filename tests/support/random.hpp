// Deterministic random test data. The generator is spelled out (splitmix64 + Box-Muller)
// instead of using <random>'s distributions, whose outputs differ between standard libraries,
// so a seed names the same tensor on every machine.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "lighthouse/tensor.hpp"
#include "support/reference.hpp"

namespace lhtest {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}

  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]: log is finite
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  std::int64_t below(std::int64_t n) { return static_cast<std::int64_t>(next() % n); }

 private:
  std::uint64_t state_;
};

// Rounds to the nearest float32, so that float32 and float64 runs see identical inputs and one
// float64 reference serves both.
inline double to_float(double x) {
  return static_cast<double>(static_cast<float>(x));
}

// Normal values of the given standard deviation, float32-representable.
inline std::vector<double> random_normal(std::int64_t n, std::uint64_t seed, double stddev = 1.0) {
  Rng rng(seed);
  std::vector<double> x(n);
  for (double& e : x) e = to_float(stddev * rng.normal());
  return x;
}

// A q- or k-like [B, N, H, D] tensor: normal rows, each scaled by exp(spread * normal) so that
// token norms vary widely and the selection has clear winners and losers.
inline std::vector<double> random_rows(const Shape& s, std::uint64_t seed, double spread = 0.5) {
  Rng rng(seed);
  std::vector<double> x(s.numel());
  for (std::int64_t row = 0; row < s.B * s.N * s.H; ++row) {
    const double gain = std::exp(spread * rng.normal());
    for (std::int64_t d = 0; d < s.D; ++d) x[row * s.D + d] = to_float(gain * rng.normal());
  }
  return x;
}

// A contiguous CPU tensor of `dtype` (float32 or float64) holding `values`.
inline lighthouse::Tensor to_tensor(const std::vector<double>& values, lighthouse::DType dtype,
                                    const Shape& s) {
  using lighthouse::DType;
  lighthouse::Tensor t =
      lighthouse::Tensor::empty(dtype, lighthouse::Device::kCPU, {s.B, s.N, s.H, s.D});
  if (static_cast<std::int64_t>(values.size()) != t.numel()) {
    throw std::invalid_argument("to_tensor: size does not match the shape");
  }
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::kFloat32) {
      t.data<float>()[i] = static_cast<float>(values[i]);
    } else if (dtype == DType::kFloat64) {
      t.data<double>()[i] = values[i];
    } else {
      throw std::invalid_argument("to_tensor: float32 or float64 only");
    }
  }
  return t;
}

// A tensor of `dtype` filled with NaN: a library that must overwrite it and does not is caught.
inline lighthouse::Tensor nan_tensor(lighthouse::DType dtype, const Shape& s) {
  return to_tensor(std::vector<double>(s.numel(), std::nan("")), dtype, s);
}

// The values of a float32/float64 rank-4 view (any strides), in C order, widened to double
// (exactly, so comparing the doubles bit for bit compares the original bits).
inline std::vector<double> to_vector(const lighthouse::TensorView& t) {
  using lighthouse::DType;
  if (t.rank != 4) throw std::invalid_argument("to_vector: rank 4 only");
  std::vector<double> x;
  x.reserve(t.numel());
  for (std::int64_t a = 0; a < t.shape[0]; ++a) {
    for (std::int64_t b = 0; b < t.shape[1]; ++b) {
      for (std::int64_t c = 0; c < t.shape[2]; ++c) {
        for (std::int64_t d = 0; d < t.shape[3]; ++d) {
          const std::int64_t off =
              a * t.strides[0] + b * t.strides[1] + c * t.strides[2] + d * t.strides[3];
          x.push_back(t.dtype == DType::kFloat32 ? t.data_as<float>()[off]
                                                 : t.data_as<double>()[off]);
        }
      }
    }
  }
  return x;
}

// True when the two vectors hold the same bits (NaN payloads and signed zeros included).
inline bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

}  // namespace lhtest
