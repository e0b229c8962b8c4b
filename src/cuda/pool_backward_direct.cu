// Backward of the gather without staging (the forward scatter's direct design, scatter.cu):
// dx[t] = sum over levels l in order of dx_sel[inverse(l, t / c_l)] / c_l, for dq, dk and dv.
//
// A thread owns one 16-byte vector of U consecutive tokens t0 .. t0 + U - 1 of one head, with
// t0 a multiple of U and U <= p: every level above the tokens then gives all U tokens the same
// entry (t / c_l is the same), so a thread loads U + L - 1 inverse entries and at most
// (U + L - 1) rows per tensor, all in flight together. A thread keeps its head and strides over
// the (batch, token group) pairs; the next group's inverse entries are loaded before this
// group's rows are waited for, so each group costs one exposed round trip. No shared memory,
// no barrier, no atomics. The sums are those of the staged kernel (gather.cu): fp32 from +0.0,
// `acc += grad * (1 / c_l)` level by level in order, unselected entries skipped, rounded once:
// the same bits.
#include <algorithm>
#include <type_traits>

#include "cuda/check.hpp"
#include "cuda/pool_backward_direct.hpp"
#include "cuda/vec.cuh"

namespace lighthouse::cuda {

namespace {

constexpr int kThreads = 256;

struct PoolDirectArgs {
  Geometry g;
  const std::int32_t* inverse;  // [BH, P]
  const void* dsel[3];          // [BH, S, D]
  TokenTensor dx[3];
  std::int64_t groups;  // token groups per (batch, head): N / U
};

template <int U, int L>
struct Lookup {
  std::int32_t fine[U];
  std::int32_t coarse[L - 1];
};

// Issues the inverse loads of the group starting at token t0; nothing waits here.
template <int U, int L>
__device__ __forceinline__ Lookup<U, L> lookup(const PoolDirectArgs& a, std::int64_t bh,
                                               std::int64_t t0) {
  const Geometry& g = a.g;
  const std::int32_t* inv = a.inverse + bh * g.pyramid_size;
  Lookup<U, L> r;
#pragma unroll
  for (int u = 0; u < U; ++u) r.fine[u] = __ldg(inv + g.offset[0] + t0 + u);
#pragma unroll
  for (int l = 1; l < L; ++l)
    r.coarse[l - 1] = __ldg(inv + g.offset[l] + (t0 >> (l * g.log2_pool)));
  return r;
}

// Block (D / V vectors, heads per block, groups per block); grid (group strides, head blocks).
// NT: tensors handled together (1 or 3).
template <typename T, int U, int L, int NT>
__global__ void __launch_bounds__(kThreads, NT == 1 ? 4 : 2)
    pool_backward_direct_kernel(const PoolDirectArgs a) {
  constexpr int V = kVec<T>;
  const Geometry& g = a.g;
  const int v = static_cast<int>(threadIdx.x);
  const std::int64_t h = static_cast<std::int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
  if (h >= g.heads) return;
  const int stride = static_cast<int>(gridDim.x * blockDim.z);
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.z + threadIdx.z;
  if (first >= g.batch * a.groups) return;
  int b = static_cast<int>(first / a.groups);
  int m = static_cast<int>(first - b * a.groups);
  Lookup<U, L> cur = lookup<U, L>(a, b * g.heads + h, std::int64_t{m} * U);
  const uint4 zero = make_uint4(0, 0, 0, 0);
  while (true) {
    const std::int64_t t0 = std::int64_t{m} * U;
    const std::int64_t bh = b * g.heads + h;
    // 1. This group's rows of every tensor, all in flight together.
    uint4 fine[NT][U], coarse[NT][L - 1];
#pragma unroll
    for (int x = 0; x < NT; ++x) {
      const T* sel = static_cast<const T*>(a.dsel[x]) + bh * g.S * g.head_dim + v * V;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        fine[x][u] = cur.fine[u] >= 0 ? load16(sel + cur.fine[u] * g.head_dim) : zero;
      }
#pragma unroll
      for (int l = 0; l < L - 1; ++l) {
        coarse[x][l] = cur.coarse[l] >= 0 ? load16(sel + cur.coarse[l] * g.head_dim) : zero;
      }
    }
    // 2. The next group's inverse entries, in flight while this group's rows arrive.
    int b_next = b;
    std::int64_t m_next = std::int64_t{m} + stride;
    while (m_next >= a.groups) {
      m_next -= a.groups;
      ++b_next;
    }
    const bool more = b_next < g.batch;
    Lookup<U, L> nxt = cur;
    if (more) nxt = lookup<U, L>(a, b_next * g.heads + h, m_next * U);
      // 3. Per token and tensor: the levels in order, as the staged kernel sums them.
#pragma unroll
    for (int x = 0; x < NT; ++x) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        float acc[V];
#pragma unroll
        for (int e = 0; e < V; ++e) acc[e] = 0.f;
        if (cur.fine[u] >= 0) {
          float f[V];
          unpack<T>(fine[x][u], f);
          const float inv_c = 1.0f;  // level 1: c = 1 (kept as a product: the staged form)
#pragma unroll
          for (int e = 0; e < V; ++e) acc[e] += f[e] * inv_c;
        }
#pragma unroll
        for (int l = 0; l < L - 1; ++l) {
          if (cur.coarse[l] < 0) continue;
          float f[V];
          unpack<T>(coarse[x][l], f);
          const float inv_c = ldexpf(1.0f, -(l + 1) * g.log2_pool);  // exact: a power of two
#pragma unroll
          for (int e = 0; e < V; ++e) acc[e] += f[e] * inv_c;
        }
        store16(token_ptr_mut<T>(a.dx[x], b, t0 + u, h, v * V), pack<T>(acc));
      }
    }
    if (!more) break;
    b = b_next;
    m = static_cast<int>(m_next);
    cur = nxt;
  }
}

template <typename T, int U, int L, int NT>
void launch(const Geometry& g, const std::int32_t* inverse, const void* const* dsel,
            const TokenTensor* dx, cudaStream_t stream) {
  PoolDirectArgs a{};
  a.g = g;
  a.inverse = inverse;
  for (int x = 0; x < NT; ++x) {
    a.dsel[x] = dsel[x];
    a.dx[x] = dx[x];
  }
  a.groups = g.seq / U;
  const int nv = static_cast<int>(g.head_dim / kVec<T>);
  const int rows = std::max(1, kThreads / nv);  // (head, group) rows per block
  const int heads = static_cast<int>(std::min<std::int64_t>(g.heads, rows));
  const int groups = std::min(64, rows / heads);  // blockDim.z <= 64
  const std::int64_t head_blocks = (g.heads + heads - 1) / heads;
  if (head_blocks > 65535) {
    throw Error("launch_pool_backward: grid too large (" + std::to_string(g.heads) + " heads)");
  }
  const dim3 block(static_cast<unsigned>(nv), static_cast<unsigned>(heads),
                   static_cast<unsigned>(groups));
  const auto kernel = pool_backward_direct_kernel<T, U, L, NT>;
  const int threads = static_cast<int>(block.x * block.y * block.z);
  // Fill the device once; every thread then strides over the (batch, group) pairs.
  const std::int64_t pairs = g.batch * a.groups;
  const std::int64_t resident = resident_blocks(kernel, threads, 0);
  const std::int64_t wanted = (pairs + groups - 1) / groups;
  const std::int64_t x = std::max<std::int64_t>(1, std::min(wanted, resident / head_blocks));
  kernel<<<dim3(static_cast<unsigned>(x), static_cast<unsigned>(head_blocks)), block, 0, stream>>>(
      a);
  CUDA_CHECK_LAUNCH("pool_backward_direct_kernel");
}

template <typename T, int NT>
void launch_levels(const Geometry& g, const std::int32_t* inverse, const void* const* dsel,
                   const TokenTensor* dx, cudaStream_t stream) {
  const auto by_levels = [&](auto u) {
    constexpr int U = decltype(u)::value;
    switch (g.levels) {
      case 2:
        return launch<T, U, 2, NT>(g, inverse, dsel, dx, stream);
      case 3:
        return launch<T, U, 3, NT>(g, inverse, dsel, dx, stream);
      default:
        return launch<T, U, 4, NT>(g, inverse, dsel, dx, stream);
    }
  };
  if (g.log2_pool >= 2) {
    by_levels(std::integral_constant<int, 4>{});
  } else {
    by_levels(std::integral_constant<int, 2>{});
  }
}

}  // namespace

bool pool_backward_direct_supported(const Geometry& g) {
  return g.levels >= 2 && g.levels <= kPoolDirectLevels && g.log2_pool >= 1;
}

void launch_pool_backward_direct(const Geometry& g, DType dtype, const std::int32_t* inverse,
                                 const void* const* dsel, const TokenTensor* dx, int count,
                                 cudaStream_t stream) {
  if (!pool_backward_direct_supported(g) || (count != 1 && count != 3)) {
    throw Error("launch_pool_backward_direct: unsupported geometry or tensor count");
  }
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (count == 1) {
      launch_levels<T, 1>(g, inverse, dsel, dx, stream);
    } else {
      launch_levels<T, 3>(g, inverse, dsel, dx, stream);
    }
  });
}

}  // namespace lighthouse::cuda
