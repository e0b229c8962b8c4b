// The gather's backward without shared-memory staging, for the common pyramids (2 to 4 levels);
// gather.cu's launch_gather_backward uses it where it applies (same bits as the staged kernel).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/stages.hpp"

namespace lighthouse::cuda {

inline constexpr int kGatherBackwardDirectLevels = 4;  // levels the kernel keeps in registers

// Whether launch_gather_backward_direct handles this geometry (2 <= L <= 4).
bool gather_backward_direct_supported(const Geometry& g);

// dx[x][t] = sum_l dsel[x][position(l, t / c_l)] / c_l for x < count (count 1 or 3).
void launch_gather_backward_direct(const Geometry& g, DType dtype, const std::int32_t* position,
                                   const void* const* dsel, const TokenTensor* dx, int count,
                                   cudaStream_t stream);

}  // namespace lighthouse::cuda
