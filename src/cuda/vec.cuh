// Device helpers shared by the stage kernels: 16-byte vectors of bf16/fp16/fp32 converted to
// and from float, dtype dispatch, grid sizing and pyramid-index decoding.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "cuda/check.hpp"
#include "cuda/stages.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cuda {

// Every global access of a row is a 16-byte vector of kVec<T> elements.
template <typename T>
inline constexpr int kVec = 16 / static_cast<int>(sizeof(T));

template <typename T>
__device__ __forceinline__ void unpack(const uint4& raw, float* f);
template <typename T>
__device__ __forceinline__ uint4 pack(const float* f);

template <>
__device__ __forceinline__ void unpack<float>(const uint4& raw, float* f) {
  f[0] = __uint_as_float(raw.x);
  f[1] = __uint_as_float(raw.y);
  f[2] = __uint_as_float(raw.z);
  f[3] = __uint_as_float(raw.w);
}
template <>
__device__ __forceinline__ uint4 pack<float>(const float* f) {
  return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]),
                    __float_as_uint(f[3]));
}

template <>
__device__ __forceinline__ void unpack<__nv_bfloat16>(const uint4& raw, float* f) {
  const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    // bf16 is the top half of a float: widening is a shift.
    f[2 * i] = __uint_as_float(words[i] << 16);
    f[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}
template <>
__device__ __forceinline__ uint4 pack<__nv_bfloat16>(const float* f) {
  unsigned words[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    words[i] = *reinterpret_cast<const unsigned*>(&h);
  }
  return make_uint4(words[0], words[1], words[2], words[3]);
}

template <>
__device__ __forceinline__ void unpack<__half>(const uint4& raw, float* f) {
  const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}
template <>
__device__ __forceinline__ uint4 pack<__half>(const float* f) {
  unsigned words[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const __half2 h = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
    words[i] = *reinterpret_cast<const unsigned*>(&h);
  }
  return make_uint4(words[0], words[1], words[2], words[3]);
}

// Read-only 16-byte load through the non-coherent path.
__device__ __forceinline__ uint4 load16(const void* p) {
  return __ldg(reinterpret_cast<const uint4*>(p));
}
__device__ __forceinline__ void store16(void* p, const uint4& v) {
  *reinterpret_cast<uint4*>(p) = v;
}

// Element pointer of token t, head h, batch b, element d of a [B, N, H, D] view.
template <typename T>
__device__ __forceinline__ const T* token_ptr(const TokenTensor& x, std::int64_t b, std::int64_t t,
                                              std::int64_t h, std::int64_t d) {
  return static_cast<const T*>(x.data) + b * x.sb + t * x.sn + h * x.sh + d;
}
template <typename T>
__device__ __forceinline__ T* token_ptr_mut(const TokenTensor& x, std::int64_t b, std::int64_t t,
                                            std::int64_t h, std::int64_t d) {
  return static_cast<T*>(x.data) + b * x.sb + t * x.sn + h * x.sh + d;
}

// Level (0-based) of a pyramid index: the last level whose offset is <= index.
__device__ __forceinline__ int level_of(const Geometry& g, std::int64_t index) {
  int l = g.levels - 1;
  while (l > 0 && index < g.offset[l]) --l;
  return l;
}

// Calls f(T{}) with the element type of `dtype` (bf16, fp16 or fp32).
template <class F>
void dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kBFloat16:
      f(__nv_bfloat16{});
      return;
    case DType::kFloat16:
      f(__half{});
      return;
    case DType::kFloat32:
      f(float{});
      return;
    default:
      break;
  }
  throw Error(std::string("CUDA stage kernels: unsupported dtype ") + dtype_name(dtype));
}

// Launch shape of the row kernels: a block is (vector, row) = (nv, rows_per_block) threads, the
// grid is (row blocks, heads, batch). Coordinates come from block and thread indices, with no
// integer division in the kernels; rows (N or S) only ever go into gridDim.x.
struct RowGrid {
  dim3 grid, block;
};
inline RowGrid row_grid(std::int64_t rows, std::int64_t heads, std::int64_t batch, int nv) {
  const int per_block = std::max(1, 256 / nv);
  const std::int64_t blocks = (rows + per_block - 1) / per_block;
  if (blocks > 0x7fffffff || heads > 65535 || batch > 65535) {
    throw Error("CUDA stage kernels: grid too large (" + std::to_string(blocks) + " row blocks, " +
                std::to_string(heads) + " heads, " + std::to_string(batch) + " batches)");
  }
  return {dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(heads),
               static_cast<unsigned>(batch)),
          dim3(static_cast<unsigned>(nv), static_cast<unsigned>(per_block), 1)};
}

// Blocks of `kernel` (with this block size and dynamic shared memory) that the current device
// holds at once: the grid size of a grid-stride kernel that fills the device exactly once.
// Asked of the driver once per (device, kernel, shape), then cached.
template <typename Kernel>
std::int64_t resident_blocks(Kernel kernel, int threads, std::size_t smem) {
  static std::mutex mutex;
  static std::map<std::tuple<int, const void*, int, std::size_t>, std::int64_t> cache;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  const auto key = std::make_tuple(device, reinterpret_cast<const void*>(kernel), threads, smem);
  std::lock_guard<std::mutex> lock(mutex);
  const auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  int per_sm = 0, sms = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const std::int64_t blocks = std::max<std::int64_t>(1, static_cast<std::int64_t>(per_sm) * sms);
  cache.emplace(key, blocks);
  return blocks;
}

}  // namespace lighthouse::cuda
