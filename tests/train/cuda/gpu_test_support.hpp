// Helpers of the CUDA model's tests: random host data, device copies in fp32 or bf16 (with the
// host values rounded the same way, so that float64 references see what the device sees),
// poisoned outputs (NaN bytes, so an element a kernel fails to write shows), and tolerance checks
// that print the worst element.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "lighthouse/tensor.hpp"
#include "support/device_buffer.hpp"

namespace lhtest::gpu {

using lighthouse::DType;
using lighthouse::testing::DeviceBuffer;

// n values drawn from normal(0, scale) with the trainer's generator.
std::vector<double> random_values(std::size_t n, std::uint64_t seed, double scale = 1.0);
std::vector<std::int32_t> random_tokens(std::size_t n, int vocab, std::uint64_t seed);

// What `dtype` (float32 or bfloat16, round to nearest even) stores for v.
double round_to(DType dtype, double v);
std::vector<double> rounded(DType dtype, std::vector<double> v);

// A device copy of v in `dtype` (float32 or bfloat16).
DeviceBuffer upload(const std::vector<double>& v, DType dtype);
template <typename T>
DeviceBuffer upload_raw(const std::vector<T>& v) {
  return DeviceBuffer::from_host(v);
}
// n elements of `dtype` back from the device (after waiting for it), as doubles.
std::vector<double> download(const DeviceBuffer& buffer, DType dtype, std::size_t n);
// A device buffer of `bytes` filled with 0xFF bytes: NaN in float32 and bfloat16.
DeviceBuffer poisoned(std::size_t bytes);

// Passes when |got - want| <= tol * (|want| + rms(want)) everywhere (NaN fails): relative
// error, with the scale of the whole tensor as a floor for elements near zero.
void expect_close(const std::vector<double>& got, const std::vector<double>& want, double tol,
                  const std::string& what);
// Passes when the two are the same bits.
void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want,
                      const std::string& what);

}  // namespace lhtest::gpu
