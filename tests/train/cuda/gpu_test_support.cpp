#include "gpu_test_support.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "cuda/check.hpp"
#include "train/rng.hpp"

namespace lhtest::gpu {

namespace {

std::uint16_t to_bf16(float f) {
  std::uint32_t u = 0;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return 0x7fc0;
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<std::uint16_t>(u >> 16);
}

float from_bf16(std::uint16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f = 0;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

std::vector<double> random_values(std::size_t n, std::uint64_t seed, double scale) {
  lighthouse::train::Rng rng(seed);
  std::vector<double> v(n);
  for (double& x : v) x = scale * rng.normal();
  return v;
}

std::vector<std::int32_t> random_tokens(std::size_t n, int vocab, std::uint64_t seed) {
  lighthouse::train::Rng rng(seed);
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(vocab)));
  return t;
}

double round_to(DType dtype, double v) {
  const auto f = static_cast<float>(v);
  return dtype == DType::kBFloat16 ? from_bf16(to_bf16(f)) : f;
}

std::vector<double> rounded(DType dtype, std::vector<double> v) {
  for (double& x : v) x = round_to(dtype, x);
  return v;
}

DeviceBuffer upload(const std::vector<double>& v, DType dtype) {
  if (dtype == DType::kBFloat16) {
    std::vector<std::uint16_t> h(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) h[i] = to_bf16(static_cast<float>(v[i]));
    return DeviceBuffer::from_host(h);
  }
  std::vector<float> f(v.begin(), v.end());
  return DeviceBuffer::from_host(f);
}

std::vector<double> download(const DeviceBuffer& buffer, DType dtype, std::size_t n) {
  std::vector<double> out(n);
  if (dtype == DType::kBFloat16) {
    const auto h = buffer.to_host<std::uint16_t>();
    for (std::size_t i = 0; i < n; ++i) out[i] = from_bf16(h[i]);
  } else {
    const auto f = buffer.to_host<float>();
    for (std::size_t i = 0; i < n; ++i) out[i] = f[i];
  }
  return out;
}

DeviceBuffer poisoned(std::size_t bytes) {
  DeviceBuffer buffer(bytes);
  CUDA_CHECK(cudaMemset(buffer.get(), 0xFF, bytes));
  CUDA_CHECK(cudaDeviceSynchronize());
  return buffer;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double ss = 0;
  for (double w : want) ss += w * w;
  const double rms = want.empty() ? 0.0 : std::sqrt(ss / static_cast<double>(want.size()));
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(got[i] - want[i]) / (std::abs(want[i]) + rms + 1e-300);
    if (!(err <= worst)) {  // NaN sticks
      worst = err;
      at = i;
      if (std::isnan(err)) break;
    }
  }
  EXPECT_LE(worst, tol) << what << ": worst at " << at << ": got " << got[at] << ", want "
                        << want[at] << " (rms of want " << rms << ")";
  std::printf("  %-44s worst normalised error %.2e (tol %.0e)\n", what.c_str(), worst, tol);
}

void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      ADD_FAILURE() << what << ": first difference at " << i << ": " << got[i] << " vs " << want[i];
      return;
    }
  }
}

}  // namespace lhtest::gpu
