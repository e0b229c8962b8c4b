// The edges between the chunks of a sharded sequence (context parallelism, context_parallel.hpp),
// on the GPU. A chunk's last entry at level l >= 1 reaches the next chunk's first c_l - 1 tokens;
// these kernels move and add exactly those contributions, with the scatter's order and
// arithmetic (scatter.cu: fp32 sums from +0.0, levels fine to coarse, dout tokens in order), so
// that a chunk's tokens get the single-device bits. All of it is a few rows per (batch, head):
// one thread per 16-byte vector, flat grids.
#include <cstdint>

#include "cuda/check.hpp"
#include "cuda/stages.hpp"
#include "cuda/vec.cuh"

namespace lighthouse::cuda {

namespace {

constexpr int kThreads = 256;

dim3 flat_grid(std::int64_t threads, const char* what) {
  const std::int64_t blocks = (threads + kThreads - 1) / kThreads;
  if (blocks > 0x7fffffff) throw Error(std::string(what) + ": grid too large");
  return dim3(static_cast<unsigned>(blocks > 0 ? blocks : 1));
}

// The pyramid index of the chunk's last entry at level l.
__device__ __forceinline__ std::int64_t last_entry(const Geometry& g, int l) {
  return g.offset[l] + g.size[l] - 1;
}

// edges[bh][l - 1] = o_sel row of the last entry of level l, or zero; thread = (bh, l, vector).
template <typename T>
__global__ void output_edges_kernel(const Geometry g, const std::int32_t* position, const T* o_sel,
                                    T* edges) {
  constexpr int V = kVec<T>;
  const int nv = static_cast<int>(g.head_dim / V), rows = g.levels - 1;
  const std::int64_t id = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= g.batch * g.heads * rows * nv) return;
  const int v = static_cast<int>(id % nv);
  const int l = 1 + static_cast<int>((id / nv) % rows);
  const std::int64_t bh = id / nv / rows;
  const std::int32_t s = position[bh * g.pyramid_size + last_entry(g, l)];
  const uint4 row =
      s >= 0 ? load16(o_sel + (bh * g.S + s) * g.head_dim + v * V) : make_uint4(0, 0, 0, 0);
  store16(edges + (bh * rows + l - 1) * g.head_dim + v * V, row);
}

// out's first c_{L-1} - 1 tokens again, the previous chunk's edges standing in for the entries
// before the chunk; thread = (b, h, token, vector).
template <typename T>
__global__ void scatter_edges_kernel(const Geometry g, const std::int32_t* position, const T* o_sel,
                                     const T* prev, TokenTensor out, std::int64_t tokens) {
  constexpr int V = kVec<T>;
  const int nv = static_cast<int>(g.head_dim / V);
  const std::int64_t id = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= g.batch * g.heads * tokens * nv) return;
  const int v = static_cast<int>(id % nv);
  const std::int64_t t = (id / nv) % tokens;
  const std::int64_t bh = id / nv / tokens;
  const std::int64_t b = bh / g.heads, h = bh % g.heads;
  float acc[V];
#pragma unroll
  for (int e = 0; e < V; ++e) acc[e] = 0.f;
  for (int l = 0; l < g.levels; ++l) {  // levels in order, as the scatter
    const std::int64_t i = ((t + 1) >> (l * g.log2_pool)) - 1;
    const T* row;
    if (i >= 0) {
      const std::int32_t s = position[bh * g.pyramid_size + g.offset[l] + i];
      if (s < 0) continue;
      row = o_sel + (bh * g.S + s) * g.head_dim;
    } else {  // before the chunk: the previous chunk's last entry of level l (l >= 1)
      row = prev + (bh * (g.levels - 1) + l - 1) * g.head_dim;
    }
    float f[V];
    unpack<T>(load16(row + v * V), f);
#pragma unroll
    for (int e = 0; e < V; ++e) acc[e] += f[e];
  }
  store16(token_ptr_mut<T>(out, b, t, h, v * V), pack<T>(acc));
}

// The do_sel rows of the chunk's last entries again: the chunk's last dout token, then the next
// chunk's first c_l - 1 (next: [B][tokens][H][D]); thread = (bh, l, vector).
template <typename T>
__global__ void scatter_backward_edges_kernel(const Geometry g, const std::int32_t* position,
                                              TokenTensor dout, const T* next, std::int64_t tokens,
                                              T* do_sel) {
  constexpr int V = kVec<T>;
  const int nv = static_cast<int>(g.head_dim / V), rows = g.levels - 1;
  const std::int64_t id = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= g.batch * g.heads * rows * nv) return;
  const int v = static_cast<int>(id % nv);
  const int l = 1 + static_cast<int>((id / nv) % rows);
  const std::int64_t bh = id / nv / rows;
  const std::int64_t b = bh / g.heads, h = bh % g.heads;
  const std::int32_t s = position[bh * g.pyramid_size + last_entry(g, l)];
  if (s < 0) return;
  float sum[V], f[V];
#pragma unroll
  for (int e = 0; e < V; ++e) sum[e] = 0.f;
  unpack<T>(load16(token_ptr<T>(dout, b, g.seq - 1, h, v * V)), f);
#pragma unroll
  for (int e = 0; e < V; ++e) sum[e] += f[e];
  const std::int64_t reach = (std::int64_t{1} << (l * g.log2_pool)) - 1;
  for (std::int64_t j = 0; j < reach; ++j) {
    unpack<T>(load16(next + ((b * tokens + j) * g.heads + h) * g.head_dim + v * V), f);
#pragma unroll
    for (int e = 0; e < V; ++e) sum[e] += f[e];
  }
  store16(do_sel + (bh * g.S + s) * g.head_dim + v * V, pack<T>(sum));
}

// dst [B][tokens][H][D] = the first tokens of x; thread = (b, token, h, vector).
template <typename T>
__global__ void copy_tokens_kernel(TokenTensor x, std::int64_t batch, std::int64_t tokens,
                                   std::int64_t heads, std::int64_t head_dim, T* dst) {
  constexpr int V = kVec<T>;
  const int nv = static_cast<int>(head_dim / V);
  const std::int64_t id = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= batch * tokens * heads * nv) return;
  const int v = static_cast<int>(id % nv);
  const std::int64_t h = (id / nv) % heads;
  const std::int64_t t = (id / nv / heads) % tokens;
  const std::int64_t b = id / nv / heads / tokens;
  store16(dst + id * V, load16(token_ptr<T>(x, b, t, h, v * V)));
}

}  // namespace

void launch_output_edges(const Geometry& g, DType dtype, const std::int32_t* position,
                         const void* o_sel, void* edges, cudaStream_t stream) {
  if (g.levels < 2) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = g.batch * g.heads * (g.levels - 1) * (g.head_dim / kVec<T>);
    output_edges_kernel<T><<<flat_grid(n, "launch_output_edges"), kThreads, 0, stream>>>(
        g, position, static_cast<const T*>(o_sel), static_cast<T*>(edges));
    CUDA_CHECK_LAUNCH("output_edges_kernel");
  });
}

void launch_scatter_edges(const Geometry& g, DType dtype, const std::int32_t* position,
                          const void* o_sel, const void* prev_edges, const TokenTensor& out,
                          cudaStream_t stream) {
  const std::int64_t tokens =
      std::min((std::int64_t{1} << ((g.levels - 1) * g.log2_pool)) - 1, g.seq);
  if (g.levels < 2 || tokens <= 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = g.batch * g.heads * tokens * (g.head_dim / kVec<T>);
    scatter_edges_kernel<T><<<flat_grid(n, "launch_scatter_edges"), kThreads, 0, stream>>>(
        g, position, static_cast<const T*>(o_sel), static_cast<const T*>(prev_edges), out, tokens);
    CUDA_CHECK_LAUNCH("scatter_edges_kernel");
  });
}

void launch_scatter_backward_edges(const Geometry& g, DType dtype, const std::int32_t* position,
                                   const TokenTensor& dout, const void* next_dout, void* do_sel,
                                   cudaStream_t stream) {
  if (g.levels < 2) return;
  const std::int64_t tokens = (std::int64_t{1} << ((g.levels - 1) * g.log2_pool)) - 1;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = g.batch * g.heads * (g.levels - 1) * (g.head_dim / kVec<T>);
    scatter_backward_edges_kernel<T>
        <<<flat_grid(n, "launch_scatter_backward_edges"), kThreads, 0, stream>>>(
            g, position, dout, static_cast<const T*>(next_dout), tokens, static_cast<T*>(do_sel));
    CUDA_CHECK_LAUNCH("scatter_backward_edges_kernel");
  });
}

void launch_copy_tokens(DType dtype, const TokenTensor& x, std::int64_t batch, std::int64_t tokens,
                        std::int64_t heads, std::int64_t head_dim, void* dst, cudaStream_t stream) {
  if (tokens <= 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t n = batch * tokens * heads * (head_dim / kVec<T>);
    copy_tokens_kernel<T><<<flat_grid(n, "launch_copy_tokens"), kThreads, 0, stream>>>(
        x, batch, tokens, heads, head_dim, static_cast<T*>(dst));
    CUDA_CHECK_LAUNCH("copy_tokens_kernel");
  });
}

}  // namespace lighthouse::cuda
