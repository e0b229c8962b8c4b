#include "support/require_gpu.hpp"

#include <cuda_runtime.h>

#include <cstdlib>
#include <filesystem>

namespace lighthouse::testing {

const std::string& gpu_unavailable_reason() {
  static const std::string reason = [] {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();  // clear it so that later calls do not report it
      return std::string("no usable CUDA device (cudaGetDeviceCount: ") + cudaGetErrorName(status) +
             ": " + cudaGetErrorString(status) + ")";
    }
    if (count == 0) return std::string("no CUDA device (cudaGetDeviceCount returned 0)");
    return std::string();
  }();
  return reason;
}

bool gpu_expected() {
  const char* expect = std::getenv("LIGHTHOUSE_EXPECT_GPU");
  if (expect != nullptr && std::string(expect) == "1") return true;
  std::error_code ignored;
  return std::filesystem::exists("/dev/nvidiactl", ignored);
}

}  // namespace lighthouse::testing
