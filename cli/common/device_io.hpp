// Moving float32 host arrays to and from device tensors of any compute dtype, through the public
// Backend copy functions (a plain memcpy on the CPU).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "lighthouse/tensor.hpp"

namespace lighthouse::cli {

using Shape4 = std::array<std::int64_t, 4>;  // [B, N, H, D]

// A new [B, N, H, D] tensor of `dtype` on `device` holding `host` (rounded to dtype).
Tensor upload(const float* host, const Shape4& shape, DType dtype, Device device);
// An uninitialised [B, N, H, D] tensor.
Tensor allocate(const Shape4& shape, DType dtype, Device device);
// The tensor's values as float32 on the host.
std::vector<float> download(const Tensor& tensor);

}  // namespace lighthouse::cli
