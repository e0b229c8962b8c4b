// The public device helpers (lighthouse/device.hpp) on the CPU, and what a build without CUDA
// answers for the GPU.
#include "lighthouse/device.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "lighthouse/error.hpp"
#include "support/invalid_argument.hpp"
#include "support/reference.hpp"

namespace {

using lighthouse::Device;
using lighthouse::DType;

TEST(Device, CpuIsAvailable) {
  EXPECT_TRUE(lighthouse::backend_available(Device::kCPU));
  EXPECT_NO_THROW(lighthouse::check_available(Device::kCPU));
}

TEST(Device, CheckSupportedAsksTheBackend) {
  const lighthouse::Plan plan =
      lighthouse::make_plan(lhtest::make_config(2, 4, 128), 1, 1024, 2, 16);
  EXPECT_NO_THROW(lighthouse::check_supported(Device::kCPU, plan, DType::kFloat32));
  EXPECT_NO_THROW(lighthouse::check_supported(Device::kCPU, plan, DType::kFloat64));
  lhtest::expect_invalid([&] { lighthouse::check_supported(Device::kCPU, plan, DType::kBFloat16); },
                         {"dtype"}, "bfloat16", {"supports float32 and float64"});
}

TEST(Device, CopiesRoundTrip) {
  const std::vector<float> host = {1.5f, -2.0f, 3.25f};
  std::vector<float> device(3, 0.0f), back(3, 0.0f);
  lighthouse::copy_from_host(Device::kCPU, device.data(), host.data(), 3 * sizeof(float));
  lighthouse::copy_to_host(Device::kCPU, back.data(), device.data(), 3 * sizeof(float));
  EXPECT_EQ(back, host);
}

TEST(Device, TimingAndMemoryOnTheCpu) {
  int runs = 0;
  const double ms = lighthouse::time_ms(Device::kCPU, [&] { ++runs; });
  EXPECT_EQ(runs, 1) << "the work runs exactly once";
  EXPECT_GE(ms, 0.0);
  EXPECT_EQ(lighthouse::memory_in_use(Device::kCPU), -1) << "not meaningful on the CPU";
  EXPECT_NO_THROW(lighthouse::synchronize(Device::kCPU));
  EXPECT_NO_THROW(lighthouse::release_cached_memory(Device::kCPU));
}

#ifndef LIGHTHOUSE_WITH_CUDA
TEST(Device, CudaIsAbsentWithoutTheBackend) {
  EXPECT_FALSE(lighthouse::backend_available(Device::kCUDA));
  try {
    lighthouse::check_available(Device::kCUDA);
    ADD_FAILURE() << "a build without CUDA claimed a GPU";
  } catch (const lighthouse::Error& e) {
    EXPECT_NE(std::string(e.what()).find("-DLIGHTHOUSE_CUDA=ON"), std::string::npos) << e.what();
  }
}
#endif

}  // namespace
