// Skipping GPU tests on machines without a usable CUDA device: the GPU test binary must run,
// and report its device tests as skipped, on a build machine without a GPU or driver.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace lighthouse::testing {

// Empty when a CUDA device is usable; otherwise why not (no driver, no device, ...).
// Evaluated once per process.
const std::string& gpu_unavailable_reason();

// Fixture for tests that need a device: SetUp skips the test when there is none.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!gpu_unavailable_reason().empty()) GTEST_SKIP() << gpu_unavailable_reason();
  }
};

}  // namespace lighthouse::testing

// For TEST bodies that do not use the fixture; must be called in the test body itself.
#define LIGHTHOUSE_REQUIRE_GPU()                                       \
  do {                                                                 \
    if (!::lighthouse::testing::gpu_unavailable_reason().empty())      \
      GTEST_SKIP() << ::lighthouse::testing::gpu_unavailable_reason(); \
  } while (0)
