// RMSNorm, forward and backward. Statistics in fp32 over the fp32 residual stream; the
// normalised output is written in the activation dtype (the products' input).
//
// Forward: one block per row (a sum of squares, then the scaled row).
// Backward: a block walks kRowsPerBlock rows; per row one block-wide sum gives the projection
// coefficient, each thread updates its columns of dx and keeps its columns' dgain partial in
// registers. The partials of all blocks are then summed in block order by a second kernel, so
// dgain has the same bits on every run (no atomics).
#include "train/cuda/ops.hpp"
#include "train/cuda/vec.cuh"

namespace lighthouse::train::cuda {

namespace {

constexpr std::int64_t kRowsPerBlock = 128;

// Threads per block for a row of `dim` floats: one 4-vector each up to 256 threads.
int threads_for(std::int64_t dim) {
  const std::int64_t vecs = dim / 4;
  const std::int64_t t = (vecs + 31) / 32 * 32;
  return static_cast<int>(t < 32 ? 32 : (t > 256 ? 256 : t));
}

template <typename T>
__global__ void rmsnorm_forward_kernel(const float* x, const float* gain, T* y, float* inv_rms,
                                       int dim, float eps) {
  __shared__ float scratch[32];
  const std::int64_t row = blockIdx.x;
  const float* xr = x + row * dim;
  float ss = 0;
  for (int i = threadIdx.x * 4; i < dim; i += blockDim.x * 4) {
    const float4 v = load4(xr + i);
    ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
  }
  ss = block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / static_cast<float>(dim) + eps);
  if (threadIdx.x == 0) inv_rms[row] = inv;
  for (int i = threadIdx.x * 4; i < dim; i += blockDim.x * 4) {
    const float4 v = load4(xr + i);
    const float4 g = load4(gain + i);
    store4(y + row * dim + i,
           make_float4(v.x * inv * g.x, v.y * inv * g.y, v.z * inv * g.z, v.w * inv * g.w));
  }
}

template <typename T, int kVecs>
__global__ void rmsnorm_backward_kernel(const float* x, const float* gain, const float* inv_rms,
                                        const float* dy, float* dx, T* dx_act, float* partials,
                                        std::int64_t rows, int dim) {
  __shared__ float scratch[32];
  // Thread t owns the 4-vectors t, t + blockDim, ... (columns 4 * that).
  float4 g[kVecs], acc[kVecs];
  bool owned[kVecs];
  for (int v = 0; v < kVecs; ++v) {
    const int col = (threadIdx.x + v * blockDim.x) * 4;
    owned[v] = col < dim;
    g[v] = owned[v] ? load4(gain + col) : make_float4(0, 0, 0, 0);
    acc[v] = make_float4(0, 0, 0, 0);
  }
  const std::int64_t first = blockIdx.x * kRowsPerBlock;
  const std::int64_t last = min(rows, first + kRowsPerBlock);
  for (std::int64_t r = first; r < last; ++r) {
    float4 xv[kVecs], dyv[kVecs];
    float dot = 0;
    for (int v = 0; v < kVecs; ++v) {
      if (!owned[v]) continue;
      const std::int64_t at = r * dim + (threadIdx.x + v * blockDim.x) * 4;
      xv[v] = load4(x + at);
      dyv[v] = load4(dy + at);
      dot += (g[v].x * dyv[v].x) * xv[v].x + (g[v].y * dyv[v].y) * xv[v].y +
             (g[v].z * dyv[v].z) * xv[v].z + (g[v].w * dyv[v].w) * xv[v].w;
    }
    dot = block_sum(dot, scratch);
    const float inv = inv_rms[r];
    const float c = dot / static_cast<float>(dim) * inv * inv;
    for (int v = 0; v < kVecs; ++v) {
      if (!owned[v]) continue;
      const std::int64_t at = r * dim + (threadIdx.x + v * blockDim.x) * 4;
      float4 d = load4(dx + at);
      d.x += inv * (g[v].x * dyv[v].x - xv[v].x * c);
      d.y += inv * (g[v].y * dyv[v].y - xv[v].y * c);
      d.z += inv * (g[v].z * dyv[v].z - xv[v].z * c);
      d.w += inv * (g[v].w * dyv[v].w - xv[v].w * c);
      store4(dx + at, d);
      if (dx_act != nullptr) store4(dx_act + at, d);
      acc[v].x += dyv[v].x * xv[v].x * inv;
      acc[v].y += dyv[v].y * xv[v].y * inv;
      acc[v].z += dyv[v].z * xv[v].z * inv;
      acc[v].w += dyv[v].w * xv[v].w * inv;
    }
  }
  for (int v = 0; v < kVecs; ++v) {
    if (owned[v]) {
      store4(partials + blockIdx.x * static_cast<std::int64_t>(dim) +
                 (threadIdx.x + v * blockDim.x) * 4,
             acc[v]);
    }
  }
}

// dgain[c] += sum over blocks b (in order) of partials[b, c].
__global__ void rmsnorm_dgain_kernel(const float* partials, std::int64_t blocks, int dim,
                                     float* dgain) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= dim) return;
  float s = 0;
#pragma unroll 8  // loads run ahead; the adds stay in block order
  for (std::int64_t b = 0; b < blocks; ++b) s += partials[b * dim + c];
  dgain[c] += s;
}

void check_dim(std::int64_t dim) {
  if (dim % 4 != 0 || dim < 4 || dim > kMaxNormDim) {
    throw InvalidArgument("dim", std::to_string(dim),
                          "must be a multiple of 4 between 4 and " + std::to_string(kMaxNormDim) +
                              " for the CUDA RMSNorm");
  }
}

}  // namespace

void rmsnorm_forward(const float* x, const float* gain, void* y, DType act, float* inv_rms,
                     std::int64_t rows, std::int64_t dim, float eps, cudaStream_t stream) {
  check_dim(dim);
  if (rows == 0) return;
  dispatch_act(act, [&]<typename T>() {
    rmsnorm_forward_kernel<T><<<static_cast<unsigned>(rows), threads_for(dim), 0, stream>>>(
        x, gain, static_cast<T*>(y), inv_rms, static_cast<int>(dim), eps);
  });
  CUDA_CHECK_LAUNCH("rmsnorm_forward_kernel");
}

std::size_t rmsnorm_backward_scratch(std::int64_t rows, std::int64_t dim) {
  return static_cast<std::size_t>((rows + kRowsPerBlock - 1) / kRowsPerBlock * dim);
}

void rmsnorm_backward(const float* x, const float* gain, const float* inv_rms, const float* dy,
                      float* dx, void* dx_act, DType act, float* dgain, float* scratch,
                      std::int64_t rows, std::int64_t dim, cudaStream_t stream) {
  check_dim(dim);
  if (rows == 0) return;
  const int threads = threads_for(dim);
  const std::int64_t vecs_per_thread = (dim / 4 + threads - 1) / threads;
  const std::int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  dispatch_act(act, [&]<typename T>() {
    T* out = static_cast<T*>(dx_act);
    const auto d = static_cast<int>(dim);
    const auto grid = static_cast<unsigned>(blocks);
    if (vecs_per_thread <= 1) {
      rmsnorm_backward_kernel<T, 1>
          <<<grid, threads, 0, stream>>>(x, gain, inv_rms, dy, dx, out, scratch, rows, d);
    } else if (vecs_per_thread <= 2) {
      rmsnorm_backward_kernel<T, 2>
          <<<grid, threads, 0, stream>>>(x, gain, inv_rms, dy, dx, out, scratch, rows, d);
    } else if (vecs_per_thread <= 4) {
      rmsnorm_backward_kernel<T, 4>
          <<<grid, threads, 0, stream>>>(x, gain, inv_rms, dy, dx, out, scratch, rows, d);
    } else {
      rmsnorm_backward_kernel<T, 8>
          <<<grid, threads, 0, stream>>>(x, gain, inv_rms, dy, dx, out, scratch, rows, d);
    }
  });
  CUDA_CHECK_LAUNCH("rmsnorm_backward_kernel");
  rmsnorm_dgain_kernel<<<static_cast<unsigned>((dim + 255) / 256), 256, 0, stream>>>(
      scratch, blocks, static_cast<int>(dim), dgain);
  CUDA_CHECK_LAUNCH("rmsnorm_dgain_kernel");
}

}  // namespace lighthouse::train::cuda
