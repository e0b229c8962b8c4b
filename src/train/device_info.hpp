// What the trainer needs to know about a GPU beyond the model: its name and memory (for the
// `--deterministic auto` choice and the run's header) and its peak FLOP rate (for MFU).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace lighthouse::train {

struct CudaDeviceInfo {
  std::string name;  // e.g. "NVIDIA H100 80GB HBM3"
  std::int64_t total_bytes = 0, free_bytes = 0;
};

// Empty when this build has no CUDA or the device cannot be queried.
std::optional<CudaDeviceInfo> cuda_device_info(int ordinal);

// The vendor's dense peak in FLOP/s of a GPU named `name` (as CUDA reports it): bf16 tensor-core
// (bf16 = true) or plain fp32 (no TF32; what a --precision fp32 run uses). Empty for a GPU not in
// the table (--peak-tflops gives it then). H100 SXM and H200: 989.4 TFLOP/s bf16, 66.9 fp32.
std::optional<double> gpu_peak_flops(const std::string& name, bool bf16);

}  // namespace lighthouse::train
