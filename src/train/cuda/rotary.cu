// Rotary position embedding of q and k where they lie in the fused qkv buffer, in place.
// "Rotate half" as train/rotary.cpp: pairs (i, i + D/2) of each head, angle table [seq, D/2] in
// fp32 (computed on the host in double, as the CPU model's). One thread rotates kW consecutive
// pairs of one head of q or k (kW = 4: two 4-vectors of the head's halves).
#include "train/cuda/ops.hpp"
#include "train/cuda/vec.cuh"

namespace lighthouse::train::cuda {

namespace {

template <typename T, int kW>
__global__ void rotary_kernel(T* qkv, std::int64_t rows, std::int64_t seq, int heads, int half,
                              const float* cos, const float* sin, float sign) {
  const int groups = half / kW;  // thread groups per head
  const std::int64_t per_row = 2LL * heads * groups;
  const std::int64_t n = rows * per_row;
  const std::int64_t row_stride = 3LL * heads * 2 * half;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t row = i / per_row;
    const int rest = static_cast<int>(i % per_row);
    const int which = rest / (heads * groups);  // 0: q, 1: k
    const int head = rest / groups % heads;
    const int pair = rest % groups * kW;
    T* v = qkv + row * row_stride + static_cast<std::int64_t>(which) * heads * 2 * half +
           static_cast<std::int64_t>(head) * 2 * half;
    const std::int64_t t = (row % seq) * half + pair;
    if constexpr (kW == 4) {
      const float4 a = load4(v + pair), b = load4(v + pair + half);
      const float4 c = load4(cos + t), s = load4(sin + t);
      store4(v + pair, make_float4(a.x * c.x - sign * b.x * s.x, a.y * c.y - sign * b.y * s.y,
                                   a.z * c.z - sign * b.z * s.z, a.w * c.w - sign * b.w * s.w));
      store4(v + pair + half,
             make_float4(sign * a.x * s.x + b.x * c.x, sign * a.y * s.y + b.y * c.y,
                         sign * a.z * s.z + b.z * c.z, sign * a.w * s.w + b.w * c.w));
    } else {
      const float a = to_float(v[pair]), b = to_float(v[pair + half]);
      const float c = cos[t], s = sin[t];
      v[pair] = from_float<T>(a * c - sign * b * s);
      v[pair + half] = from_float<T>(sign * a * s + b * c);
    }
  }
}

}  // namespace

void rotary_qk(void* qkv, DType act, std::int64_t rows, std::int64_t seq, std::int64_t heads,
               std::int64_t head_dim, const float* cos, const float* sin, bool inverse,
               cudaStream_t stream) {
  if (head_dim % 2 != 0) {
    throw InvalidArgument("head_dim", std::to_string(head_dim), "must be even (rotary pairs)");
  }
  if (rows == 0) return;
  const int half = static_cast<int>(head_dim / 2);
  const float sign = inverse ? -1.0f : 1.0f;
  // 4-vectors need 4 | D/2 for the pair groups and 16-byte (fp32) or 8-byte (bf16) aligned rows.
  const bool vec = half % 4 == 0;
  dispatch_act(act, [&]<typename T>() {
    T* x = static_cast<T*>(qkv);
    const auto h = static_cast<int>(heads);
    if (vec) {
      rotary_kernel<T, 4><<<grid_for(rows * 2 * heads * (half / 4), 256), 256, 0, stream>>>(
          x, rows, seq, h, half, cos, sin, sign);
    } else {
      rotary_kernel<T, 1><<<grid_for(rows * 2 * heads * half, 256), 256, 0, stream>>>(
          x, rows, seq, h, half, cos, sin, sign);
    }
  });
  CUDA_CHECK_LAUNCH("rotary_kernel");
}

}  // namespace lighthouse::train::cuda
