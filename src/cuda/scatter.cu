// The scatter on the GPU: the scatter of the gathered outputs back to the tokens, and its backward.
//
// Forward: the entry of level l whose output reaches token t is i = (t + 1) / c_l - 1 (it covers
// [i c_l + c_l - 1, i c_l + 2 c_l - 2]), found through the position map; the levels are summed in
// order 1..L in fp32, rounded once and written out. A token that no selected entry reaches gets
// 0. Each thread owns its outputs: no atomics, the same bits on every run.
//
// Direct kernel (L <= kDirectLevels, p >= U): the walk of token_groups.cuh, a thread per 16-byte
// vector of U consecutive tokens of one head (a block's heads are adjacent: it writes whole
// [H, D] token rows), one exposed round trip per group, not the run kernel's three behind block
// barriers. Otherwise (L > kDirectLevels) the run kernel stages rows (token_runs.cuh).
//
// Backward, one thread per (gathered row, 16-byte vector): do_sel[s] is the sum of dout over
// the tokens entry s was added to, in token order. The coarsest entries together read dout
// once; finer ones only their own few tokens.
#include <type_traits>

#include "cuda/check.hpp"
#include "cuda/stages.hpp"
#include "cuda/token_groups.cuh"
#include "cuda/token_runs.cuh"
#include "cuda/vec.cuh"

namespace lighthouse::cuda {

namespace {

struct ScatterArgs {
  Geometry g;
  const std::int32_t* position;  // [BH, P]
  const void* o_sel;             // [BH, S, D]
  TokenTensor out;
  int tokens;       // tokens per block (a run)
  int max_entries;  // staged rows per block, at most
};

constexpr int kRunThreads = 256;
constexpr std::size_t kRunSmemBudget = 48 * 1024;

// Grid (runs, H, B); kRunThreads threads.
template <typename T>
__global__ void __launch_bounds__(kRunThreads) scatter_kernel(const ScatterArgs a) {
  constexpr int V = kVec<T>;
  extern __shared__ uint4 staged[];
  __shared__ RunLevels lv;
  const Geometry& g = a.g;
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const std::int64_t bh = b * g.heads + h;
  const std::int64_t t0 = static_cast<std::int64_t>(blockIdx.x) * a.tokens;
  const int tokens = static_cast<int>(min(static_cast<std::int64_t>(a.tokens), g.seq - t0));
  const int nv = static_cast<int>(g.head_dim) / V;
  uint4* rows = staged;                                            // [max_entries][nv]
  int* pos = reinterpret_cast<int*>(staged + a.max_entries * nv);  // [max_entries]
  const void* const sel[1] = {a.o_sel};
  stage_run<1>(g, a.position + bh / g.group * g.pyramid_size, sel, bh, t0, tokens, /*shift_k=*/1,
               a.max_entries, static_cast<int>(g.head_dim * sizeof(T)), lv, pos, rows);

  for (int idx = static_cast<int>(threadIdx.x); idx < tokens * nv; idx += blockDim.x) {
    const int tt = idx / nv;
    const int v = idx - tt * nv;
    const std::int64_t t = t0 + tt;
    float acc[V];
#pragma unroll
    for (int e = 0; e < V; ++e) acc[e] = 0.f;
    for (int l = 0; l < g.levels; ++l) {  // levels in order
      const std::int64_t i = ((t + 1) >> (l * g.log2_pool)) - 1;
      const int j = lv.base[l] + static_cast<int>(i - lv.first[l]);
      if (pos[j] < 0) continue;
      float f[V];
      unpack<T>(rows[j * nv + v], f);
#pragma unroll
      for (int e = 0; e < V; ++e) acc[e] += f[e];
    }
    store16(token_ptr_mut<T>(a.out, b, t, h, v * V), pack<T>(acc));
  }
}

constexpr int kDirectThreads = 256;
constexpr int kDirectLevels = 4;  // levels the direct kernel keeps in registers

struct ScatterDirectArgs {
  Geometry g;
  const std::int32_t* position;  // [BH, P]
  const void* o_sel;             // [BH, S, D]
  TokenTensor out;
  std::int64_t groups;  // token groups per (batch, head): ceil((N + 1) / U)
};

// The walk of token_groups.cuh with group m covering tokens m U - 1 .. m U + U - 2 (anchor m U:
// entry (t + 1) / c_l - 1 of level l reaches token t).
template <typename T, int U, int L>
__global__ void __launch_bounds__(kDirectThreads, 4)
    scatter_direct_kernel(const ScatterDirectArgs a) {
  constexpr int V = kVec<T>;
  const Geometry& g = a.g;
  const int v = static_cast<int>(threadIdx.x);
  DirectThread<U, L, 1> me(g, a.position, a.groups);
  if (!me.start()) return;
  while (true) {
    const std::int64_t t0 = me.first_token();
    const std::int64_t bh = me.bh();
    // 1. This group's rows, all in flight together.
    uint4 fine[U], coarse[L - 1];
    load_group_rows<T, U, L>(me.cur, static_cast<const T*>(a.o_sel) + bh * g.S * g.head_dim + v * V,
                             g.head_dim, fine, coarse);
    // 2. The next group's position entries, in flight while this group's rows arrive.
    GroupWalk next;
    GroupLookup<U, L> nxt;
    const bool more = me.prefetch(next, nxt);
    // 3. Sum the levels in order, as the run kernel: from +0.0, an unselected entry adding
    // nothing. Its row here is zero and adding +0.0 is exact (the sum starts at +0.0, so it is
    // never -0.0): no branches. The coarse rows are shared by the U tokens: unpacked once.
    float shared[L - 1][V];
#pragma unroll
    for (int l = 0; l < L - 1; ++l) unpack<T>(coarse[l], shared[l]);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float acc[V];
      unpack<T>(fine[u], acc);
#pragma unroll
      for (int e = 0; e < V; ++e) acc[e] = 0.f + acc[e];
#pragma unroll
      for (int l = 0; l < L - 1; ++l) {
#pragma unroll
        for (int e = 0; e < V; ++e) acc[e] += shared[l][e];
      }
      const std::int64_t t = t0 + u;
      if (t >= 0 && t < g.seq)
        store16(token_ptr_mut<T>(a.out, me.at.b, t, me.h, v * V), pack<T>(acc));
    }
    if (!more) break;
    me.advance(next, nxt);
  }
}

template <typename T, int U, int L>
void launch_scatter_direct(const Geometry& g, const std::int32_t* position, const void* o_sel,
                           const TokenTensor& out, cudaStream_t stream) {
  ScatterDirectArgs a{};
  a.g = g;
  a.position = position;
  a.o_sel = o_sel;
  a.out = out;
  a.groups = (g.seq + 1 + U - 1) / U;
  const auto kernel = scatter_direct_kernel<T, U, L>;
  const DirectShape shape =
      direct_shape(g, kernel, kDirectThreads, static_cast<int>(g.head_dim / kVec<T>), a.groups,
                   "launch_scatter");
  kernel<<<shape.grid, shape.block, 0, stream>>>(a);
  CUDA_CHECK_LAUNCH("scatter_direct_kernel");
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
  const std::int64_t bh = b * g.heads + h;
  const std::int64_t row = bh * g.S + s;
  const int d = threadIdx.x * V;
  const std::int64_t entry = a.indices[bh / g.group * g.S + s];
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

void launch_scatter(const Geometry& g, DType dtype, const std::int32_t* position, const void* o_sel,
                    const TokenTensor& out, cudaStream_t stream) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    // Direct kernel where every level above the tokens is shared by a group of U tokens.
    if (g.log2_pool >= 1 && g.levels >= 2 && g.levels <= kDirectLevels) {
      const auto direct = [&](auto u) {
        constexpr int U = decltype(u)::value;
        switch (g.levels) {
          case 2:
            return launch_scatter_direct<T, U, 2>(g, position, o_sel, out, stream);
          case 3:
            return launch_scatter_direct<T, U, 3>(g, position, o_sel, out, stream);
          default:
            return launch_scatter_direct<T, U, 4>(g, position, o_sel, out, stream);
        }
      };
      if (g.log2_pool >= 2) {
        direct(std::integral_constant<int, 4>{});
      } else {
        direct(std::integral_constant<int, 2>{});
      }
      return;
    }
    ScatterArgs a{};
    a.g = g;
    a.position = position;
    a.o_sel = o_sel;
    a.out = out;
    const RunShape shape = run_shape(g, 1, sizeof(T), 64, kRunSmemBudget);
    a.tokens = shape.tokens;
    a.max_entries = shape.max_entries;
    const dim3 grid = run_grid(g, shape.tokens);
    if (shape.smem > kRunSmemBudget) {
      CUDA_CHECK(cudaFuncSetAttribute(scatter_kernel<T>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(shape.smem)));
    }
    scatter_kernel<T><<<grid, kRunThreads, shape.smem, stream>>>(a);
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
