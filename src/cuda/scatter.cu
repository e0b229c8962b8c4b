// Stage 4 on the GPU: the scatter of the gathered outputs back to the tokens, and its backward.
//
// Forward, one thread per (token, head, 16-byte vector) of out: the entry of level l whose
// output reaches token t is i = (t + 1) / c_l - 1 (it covers [i c_l + c_l - 1, i c_l + 2 c_l - 2]),
// found through the inverse map; the levels are summed in order 1..L in fp32 and rounded once.
// A token that no selected entry reaches gets 0. Each thread owns its output: no atomics, the
// same bits on every run.
//
// Backward, one thread per (gathered row, 16-byte vector): do_sel[s] is the sum of dout over
// the tokens entry s was added to, in token order. The coarsest entries together read dout
// once; finer ones only their own few tokens.
#include "cuda/check.hpp"
#include "cuda/stages.hpp"
#include "cuda/vec.cuh"

namespace lighthouse::cuda {

namespace {

struct ScatterArgs {
  Geometry g;
  const std::int32_t* inverse;  // [BH, P]
  const void* o_sel;            // [BH, S, D]
  TokenTensor out;
};

// Grid (N blocks, H, B); block (D / V, tokens per block).
template <typename T>
__global__ void __launch_bounds__(256) scatter_kernel(const ScatterArgs a) {
  constexpr int V = kVec<T>;
  const Geometry& g = a.g;
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (t >= g.seq) return;
  const std::int64_t D = g.head_dim;
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const std::int64_t bh = b * g.heads + h;
  const int d = threadIdx.x * V;
  const std::int32_t* inv = a.inverse + bh * g.pyramid_size;
  float acc[V];
#pragma unroll
  for (int e = 0; e < V; ++e) acc[e] = 0.f;
  for (int l = 0; l < g.levels; ++l) {
    const std::int64_t i = ((t + 1) >> (l * g.log2_pool)) - 1;
    if (i < 0) continue;
    const std::int32_t s = inv[g.offset[l] + i];
    if (s < 0) continue;
    float f[V];
    unpack<T>(load16(static_cast<const T*>(a.o_sel) + (bh * g.S + s) * D + d), f);
#pragma unroll
    for (int e = 0; e < V; ++e) acc[e] += f[e];
  }
  store16(token_ptr_mut<T>(a.out, b, t, h, d), pack<T>(acc));
}

struct ScatterBackwardArgs {
  Geometry g;
  const std::int32_t* indices;  // [BH, S]
  TokenTensor dout;
  void* do_sel;  // [BH, S, D]
};

// Grid (S blocks, H, B); block (D / V, rows per block).
template <typename T>
__global__ void __launch_bounds__(256) scatter_backward_kernel(const ScatterBackwardArgs a) {
  constexpr int V = kVec<T>;
  const Geometry& g = a.g;
  const std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (s >= g.S) return;
  const std::int64_t D = g.head_dim, N = g.seq;
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const std::int64_t row = (b * g.heads + h) * g.S + s;
  const int d = threadIdx.x * V;
  const std::int64_t entry = a.indices[row];
  const int l = level_of(g, entry);
  const std::int64_t i = entry - g.offset[l];
  uint4 out;
  if (l == 0) {
    out = load16(token_ptr<T>(a.dout, b, i, h, d));  // a token's own row
  } else {
    const int shift = l * g.log2_pool;
    const std::int64_t c = std::int64_t{1} << shift;
    const std::int64_t lo = i * c + c - 1;
    const std::int64_t hi = min(i * c + 2 * c - 2, N - 1);
    float sum[V];
#pragma unroll
    for (int e = 0; e < V; ++e) sum[e] = 0.f;
#pragma unroll 4
    for (std::int64_t t = lo; t <= hi; ++t) {
      float f[V];
      unpack<T>(load16(token_ptr<T>(a.dout, b, t, h, d)), f);
#pragma unroll
      for (int e = 0; e < V; ++e) sum[e] += f[e];
    }
    out = pack<T>(sum);
  }
  store16(static_cast<T*>(a.do_sel) + row * D + d, out);
}

}  // namespace

void launch_scatter(const Geometry& g, DType dtype, const std::int32_t* inverse, const void* o_sel,
                    const TokenTensor& out, cudaStream_t stream) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    ScatterArgs a{};
    a.g = g;
    a.inverse = inverse;
    a.o_sel = o_sel;
    a.out = out;
    const RowGrid rg = row_grid(g.seq, g.heads, g.batch, static_cast<int>(g.head_dim / kVec<T>));
    scatter_kernel<T><<<rg.grid, rg.block, 0, stream>>>(a);
    CUDA_CHECK_LAUNCH("scatter_kernel");
  });
}

void launch_scatter_backward(const Geometry& g, DType dtype, const std::int32_t* indices,
                             const TokenTensor& dout, void* do_sel, cudaStream_t stream) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    ScatterBackwardArgs a{};
    a.g = g;
    a.indices = indices;
    a.dout = dout;
    a.do_sel = do_sel;
    const RowGrid rg = row_grid(g.S, g.heads, g.batch, static_cast<int>(g.head_dim / kVec<T>));
    scatter_backward_kernel<T><<<rg.grid, rg.block, 0, stream>>>(a);
    CUDA_CHECK_LAUNCH("scatter_backward_kernel");
  });
}

}  // namespace lighthouse::cuda
