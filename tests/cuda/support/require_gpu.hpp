// The one way a GPU test says it needs a device: LIGHTHOUSE_REQUIRE_GPU() in the test body, or
// the GpuTest fixture. Where no CUDA device is usable the test skips with the reason, so the GPU
// test binaries build and list their tests on any machine; a skip is never a pass (scripts/test
// and scripts/gpu-check report or fail on skipped tests). Where the machine has an NVIDIA device
// node (/dev/nvidiactl) or LIGHTHOUSE_EXPECT_GPU=1 is set, an unusable device is a broken
// driver or runtime, not a machine without a GPU: the test fails instead.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace lighthouse::testing {

// Empty when a CUDA device is usable; otherwise why not (no driver, no device, ...).
// Evaluated once per process.
const std::string& gpu_unavailable_reason();

// Whether this machine should have a usable GPU (see above).
bool gpu_expected();

}  // namespace lighthouse::testing

// Must be called in the test body itself (or in SetUp).
#define LIGHTHOUSE_REQUIRE_GPU()                                                                \
  do {                                                                                          \
    const std::string& lighthouse_gpu_reason = ::lighthouse::testing::gpu_unavailable_reason(); \
    if (!lighthouse_gpu_reason.empty()) {                                                       \
      if (::lighthouse::testing::gpu_expected()) {                                              \
        GTEST_FAIL() << "a GPU is expected here but unusable: " << lighthouse_gpu_reason;       \
      }                                                                                         \
      GTEST_SKIP() << "NOT CHECKED: " << lighthouse_gpu_reason;                                 \
    }                                                                                           \
  } while (0)

namespace lighthouse::testing {

// Fixture for tests that need a device: SetUp skips (or fails) as LIGHTHOUSE_REQUIRE_GPU does.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override { LIGHTHOUSE_REQUIRE_GPU(); }
};

}  // namespace lighthouse::testing
