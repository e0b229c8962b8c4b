// The gather on the GPU: the selected pyramid rows of q, k and v, in causal order, written
// contiguously as [B, H, S, D] (the layout the dense attention reads); and its backward, which
// spreads the gathered rows' gradients back to the tokens.
//
// Forward: one thread per (gathered row, 16-byte vector), handling q, k and v together (three
// independent loads in flight). A coarsest-level entry copies the row the pyramid kernel
// already averaged; a finer entry averages its c_l tokens (fp32, token order, rounded once), so
// only selected blocks are read. Level-1 entries are plain copies.
//
// Backward: one thread per (token, head, 16-byte vector) of dq, dk and dv together: for each
// level in order, the gradient of the entry holding the token, divided by c_l, looked up
// through the position map; fp32 sums, one rounding, no atomics. A block first stages the rows
// its run of tokens needs in shared memory (token_runs.cuh). Pyramids of 2 to 4 levels take the
// unstaged kernel of gather_backward_direct.cu instead (same sums, same bits).
#include "cuda/check.hpp"
#include "cuda/gather_backward_direct.hpp"
#include "cuda/stages.hpp"
#include "cuda/token_runs.cuh"
#include "cuda/vec.cuh"

namespace lighthouse::cuda {

namespace {

constexpr int kTokenBatch = 2;  // tokens of a finer entry whose loads are in flight together

struct GatherArgs {
  Geometry g;
  TokenTensor x[3];       // q, k, v (the first X are used)
  const void* coarse[3];  // [BH, n_L, D] (L >= 2)
  const std::int32_t* indices;
  void* sel[3];  // [BH, S, D]
};

// Grid (S blocks, H, B); block (D / V, rows per block). X tensors of g.heads heads together: q, k
// and v without grouped-query attention; with it q alone (query heads), then k and v (KV heads).
// Each tensor's rows are independent of the others': the same bits either way.
template <typename T, int X>
__global__ void __launch_bounds__(256, 4) gather_kernel(const GatherArgs a) {
  constexpr int V = kVec<T>;
  const Geometry& g = a.g;
  const std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (s >= g.S) return;
  const std::int64_t D = g.head_dim;
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const std::int64_t bh = b * g.heads + h;
  const std::int64_t row = bh * g.S + s;
  const int d = threadIdx.x * V;
  const int top = g.levels - 1;
  const std::int64_t entry = a.indices[bh / g.group * g.S + s];
  const int l = level_of(g, entry);
  const std::int64_t i = entry - g.offset[l];
  uint4 out[X];
  if (l == top && top > 0) {
#pragma unroll
    for (int x = 0; x < X; ++x) {
      out[x] = load16(static_cast<const T*>(a.coarse[x]) + (bh * g.size[top] + i) * D + d);
    }
  } else if (l == 0) {
#pragma unroll
    for (int x = 0; x < X; ++x) out[x] = load16(token_ptr<T>(a.x[x], b, i, h, d));
  } else {
    const int shift = l * g.log2_pool;
    const std::int64_t t0 = i << shift;
    const std::int64_t t1 = t0 + (std::int64_t{1} << shift);
    float sum[X][V];
#pragma unroll
    for (int x = 0; x < X; ++x) {
#pragma unroll
      for (int e = 0; e < V; ++e) sum[x][e] = 0.f;
    }
    // Two tokens' loads in flight at a time (c_l >= 2 is a power of two); tokens in order.
    for (std::int64_t tb = t0; tb < t1; tb += kTokenBatch) {
      uint4 raw[kTokenBatch][X];
#pragma unroll
      for (int u = 0; u < kTokenBatch; ++u) {
        if (tb + u < t1) {
#pragma unroll
          for (int x = 0; x < X; ++x) raw[u][x] = load16(token_ptr<T>(a.x[x], b, tb + u, h, d));
        }
      }
#pragma unroll
      for (int u = 0; u < kTokenBatch; ++u) {
        if (tb + u >= t1) continue;
#pragma unroll
        for (int x = 0; x < X; ++x) {
          float f[V];
          unpack<T>(raw[u][x], f);
#pragma unroll
          for (int e = 0; e < V; ++e) sum[x][e] += f[e];
        }
      }
    }
    const float inv_c = ldexpf(1.0f, -shift);
#pragma unroll
    for (int x = 0; x < X; ++x) {
#pragma unroll
      for (int e = 0; e < V; ++e) sum[x][e] *= inv_c;
      out[x] = pack<T>(sum[x]);
    }
  }
#pragma unroll
  for (int x = 0; x < X; ++x) store16(static_cast<T*>(a.sel[x]) + row * D + d, out[x]);
}

// One gather launch over the first X tensors of `a` (a.g's heads).
template <int X>
void launch_gather_kernel(DType dtype, const GatherArgs& a, cudaStream_t stream) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const RowGrid rg =
        row_grid(a.g.S, a.g.heads, a.g.batch, static_cast<int>(a.g.head_dim / kVec<T>));
    gather_kernel<T, X><<<rg.grid, rg.block, 0, stream>>>(a);
    CUDA_CHECK_LAUNCH("gather_kernel");
  });
}

struct GatherBackwardArgs {
  Geometry g;
  const std::int32_t* position;  // [BH, P]
  const void* dsel[3];           // [BH, S, D]; the first X are used
  TokenTensor dx[3];             // dq, dk, dv (or the one tensor of X = 1)
  int tokens;                    // tokens per block (a run)
  int max_entries;               // staged rows per block and tensor, at most
};

constexpr int kRunThreads = 256;
constexpr std::size_t kRunSmemBudget = 48 * 1024;

// Grid (runs, H, B); kRunThreads threads. The block stages the gathered gradients of a run of
// tokens (token_runs.cuh), then one thread per (token, 16-byte vector) adds, level by level in
// order, grad / c_l of each of the X tensors. Each tensor's sums are independent of the others,
// so X = 1 (one tensor per launch) gives the bits of X = 3.
template <typename T, int X>
__global__ void __launch_bounds__(kRunThreads) gather_backward_kernel(const GatherBackwardArgs a) {
  constexpr int V = kVec<T>;
  extern __shared__ uint4 staged[];
  __shared__ RunLevels lv;
  const Geometry& g = a.g;
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const std::int64_t bh = b * g.heads + h;
  const std::int64_t t0 = static_cast<std::int64_t>(blockIdx.x) * a.tokens;
  const int tokens = static_cast<int>(min(static_cast<std::int64_t>(a.tokens), g.seq - t0));
  const int nv = static_cast<int>(g.head_dim) / V;
  const int per_tensor = a.max_entries * nv;
  uint4* rows = staged;                                        // [X][max_entries][nv]
  int* pos = reinterpret_cast<int*>(staged + X * per_tensor);  // [max_entries]
  stage_run<X>(g, a.position + bh / g.group * g.pyramid_size, a.dsel, bh, t0, tokens,
               /*shift_k=*/0, a.max_entries, static_cast<int>(g.head_dim * sizeof(T)), lv, pos,
               rows);

  for (int idx = static_cast<int>(threadIdx.x); idx < tokens * nv; idx += blockDim.x) {
    const int tt = idx / nv;
    const int v = idx - tt * nv;
    const std::int64_t t = t0 + tt;
    float acc[X][V];
#pragma unroll
    for (int x = 0; x < X; ++x) {
#pragma unroll
      for (int e = 0; e < V; ++e) acc[x][e] = 0.f;
    }
    for (int l = 0; l < g.levels; ++l) {  // levels in order
      const int shift = l * g.log2_pool;
      const int j = lv.base[l] + static_cast<int>((t >> shift) - lv.first[l]);
      if (pos[j] < 0) continue;
      const float inv_c = ldexpf(1.0f, -shift);  // exact: c_l is a power of two
#pragma unroll
      for (int x = 0; x < X; ++x) {
        float f[V];
        unpack<T>(rows[x * per_tensor + j * nv + v], f);
#pragma unroll
        for (int e = 0; e < V; ++e) acc[x][e] += f[e] * inv_c;
      }
    }
#pragma unroll
    for (int x = 0; x < X; ++x) {
      store16(token_ptr_mut<T>(a.dx[x], b, t, h, v * V), pack<T>(acc[x]));
    }
  }
}

// The launch of gather_backward_kernel<T, X> for the first X tensors of `a` (a.g, position, dsel
// and dx filled in).
template <int X>
void launch_gather_backward_kernel(DType dtype, GatherBackwardArgs a, cudaStream_t stream) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const auto kernel = gather_backward_kernel<T, X>;
    const RunShape shape = run_shape(a.g, X, sizeof(T), 32, kRunSmemBudget);
    a.tokens = shape.tokens;
    a.max_entries = shape.max_entries;
    const dim3 grid = run_grid(a.g, shape.tokens);
    if (shape.smem > kRunSmemBudget) {
      CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(shape.smem)));
    }
    kernel<<<grid, kRunThreads, shape.smem, stream>>>(a);
    CUDA_CHECK_LAUNCH("gather_backward_kernel");
  });
}

// dx[x] from dsel[x] for the X tensors: the unstaged kernel of gather_backward_direct.cu where it
// applies (2..4 levels), else the staged one; the same bits either way.
template <int X>
void gather_backward(const Geometry& g, DType dtype, const std::int32_t* position,
                     const void* const (&dsel)[X], const TokenTensor (&dx)[X],
                     cudaStream_t stream) {
  if (gather_backward_direct_supported(g)) {
    launch_gather_backward_direct(g, dtype, position, dsel, dx, X, stream);
    return;
  }
  GatherBackwardArgs a{};
  a.g = g;
  a.position = position;
  for (int x = 0; x < X; ++x) {
    a.dsel[x] = dsel[x];
    a.dx[x] = dx[x];
  }
  launch_gather_backward_kernel<X>(dtype, a, stream);
}

}  // namespace

void launch_gather(const Geometry& g, DType dtype, const TokenTensor& q, const TokenTensor& k,
                   const TokenTensor& v, const void* coarse_q, const void* coarse_k,
                   const void* coarse_v, const std::int32_t* indices, void* q_sel, void* k_sel,
                   void* v_sel, cudaStream_t stream) {
  GatherArgs a{};
  a.g = g;
  a.x[0] = q;
  a.x[1] = k;
  a.x[2] = v;
  a.coarse[0] = coarse_q;
  a.coarse[1] = coarse_k;
  a.coarse[2] = coarse_v;
  a.indices = indices;
  a.sel[0] = q_sel;
  a.sel[1] = k_sel;
  a.sel[2] = v_sel;
  if (g.group == 1) {
    launch_gather_kernel<3>(dtype, a, stream);
    return;
  }
  // Grouped-query attention: q per query head, then k and v per KV head.
  launch_gather_kernel<1>(dtype, a, stream);
  GatherArgs kv = a;
  kv.g = kv_geometry(g);
  kv.x[0] = k;
  kv.x[1] = v;
  kv.coarse[0] = coarse_k;
  kv.coarse[1] = coarse_v;
  kv.sel[0] = k_sel;
  kv.sel[1] = v_sel;
  launch_gather_kernel<2>(dtype, kv, stream);
}

void launch_gather_backward(const Geometry& g, DType dtype, const std::int32_t* position,
                            const void* dq_sel, const void* dk_sel, const void* dv_sel,
                            const TokenTensor& dq, const TokenTensor& dk, const TokenTensor& dv,
                            cudaStream_t stream) {
  gather_backward<3>(g, dtype, position, {dq_sel, dk_sel, dv_sel}, {dq, dk, dv}, stream);
}

void launch_gather_backward(const Geometry& g, DType dtype, const std::int32_t* position,
                            const void* dx_sel, const TokenTensor& dx, cudaStream_t stream) {
  gather_backward<1>(g, dtype, position, {dx_sel}, {dx}, stream);
}

}  // namespace lighthouse::cuda
