// Device helpers of the CUDA model's kernels: 4-element row vectors of fp32 or bf16 storage
// (one 16- or 8-byte access) as float4, and a deterministic block-wide sum.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/check.hpp"
#include "lighthouse/error.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::train::cuda {

__device__ __forceinline__ float4 load4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}
__device__ __forceinline__ float4 load4(const __nv_bfloat16* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
  return make_float4(lo.x, lo.y, hi.x, hi.y);
}
__device__ __forceinline__ void store4(float* p, float4 v) {
  *reinterpret_cast<float4*>(p) = v;
}
__device__ __forceinline__ void store4(__nv_bfloat16* p, float4 v) {
  const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y);
  const __nv_bfloat162 hi = __floats2bfloat162_rn(v.z, v.w);
  uint2 raw;
  raw.x = *reinterpret_cast<const unsigned*>(&lo);
  raw.y = *reinterpret_cast<const unsigned*>(&hi);
  *reinterpret_cast<uint2*>(p) = raw;
}

__device__ __forceinline__ float to_float(float v) {
  return v;
}
__device__ __forceinline__ float to_float(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Sum of v over the block (blockDim.x a multiple of 32, every thread calling), returned to every
// thread. Butterfly shuffles within each warp, then every warp reduces the per-warp sums the same
// way: floating-point addition is commutative, so all threads get the same bits, and the order
// depends on blockDim only. `scratch` holds 32 values in shared memory; back-to-back calls may
// reuse it (the leading barrier waits for the previous call's readers).
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int warps = static_cast<int>(blockDim.x) / 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T t = lane < warps ? scratch[lane] : T(0);
  for (int o = 16; o > 0; o /= 2) t += __shfl_xor_sync(0xffffffffu, t, o);
  return t;
}

// Blocks for a grid-stride loop over n items with `threads` per block (capped: the loop covers
// the rest).
inline unsigned grid_for(std::int64_t n, int threads) {
  const std::int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

// Runs f.template operator()<T>() with T = float or __nv_bfloat16 for the activation dtype.
template <typename F>
void dispatch_act(DType act, F&& f) {
  switch (act) {
    case DType::kFloat32:
      f.template operator()<float>();
      return;
    case DType::kBFloat16:
      f.template operator()<__nv_bfloat16>();
      return;
    default:
      throw InvalidArgument("activation dtype", dtype_name(act), "must be bfloat16 or float32");
  }
}

}  // namespace lighthouse::train::cuda
