#include "train/device_info.hpp"

#include <algorithm>
#include <cctype>
#include <vector>

#if LIGHTHOUSE_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace lighthouse::train {

std::optional<CudaDeviceInfo> cuda_device_info([[maybe_unused]] int ordinal) {
#if LIGHTHOUSE_WITH_CUDA
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, ordinal) != cudaSuccess) {
    (void)cudaGetLastError();  // clear it: later calls must not report it
    return std::nullopt;
  }
  int saved = 0;
  CudaDeviceInfo info;
  info.name = prop.name;
  info.total_bytes = static_cast<std::int64_t>(prop.totalGlobalMem);
  std::size_t free = 0, total = 0;
  if (cudaGetDevice(&saved) == cudaSuccess && cudaSetDevice(ordinal) == cudaSuccess &&
      cudaMemGetInfo(&free, &total) == cudaSuccess) {
    info.free_bytes = static_cast<std::int64_t>(free);
  }
  (void)cudaSetDevice(saved);
  (void)cudaGetLastError();
  return info;
#else
  return std::nullopt;
#endif
}

std::optional<double> gpu_peak_flops(const std::string& name, bool bf16) {
  std::string upper = name;
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  auto has = [&](const char* text) { return upper.find(text) != std::string::npos; };
  // Dense (no sparsity) datasheet peaks, TFLOP/s: bf16 tensor cores, fp32 CUDA cores. The more
  // specific names come first (an "H100 PCIe" also contains "H100").
  struct Row {
    std::vector<const char*> all;  // every word must occur
    double bf16, fp32;
  };
  static const std::vector<Row> table = {
      {{"H100", "PCIE"}, 756.0, 51.2}, {{"H100", "NVL"}, 835.0, 60.0}, {{"GH200"}, 989.4, 66.9},
      {{"H200"}, 989.4, 66.9},         {{"H100"}, 989.4, 66.9},        {{"H800"}, 989.4, 66.9},
      {{"B200"}, 2250.0, 80.0},        {{"A100"}, 312.0, 19.5},        {{"A800"}, 312.0, 19.5},
      {{"L40S"}, 362.1, 91.6}};
  for (const Row& r : table) {
    if (std::all_of(r.all.begin(), r.all.end(), has)) return (bf16 ? r.bf16 : r.fp32) * 1e12;
  }
  return std::nullopt;
}

}  // namespace lighthouse::train
