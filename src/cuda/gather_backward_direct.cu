// Backward of the gather without staging (the forward scatter's direct design, scatter.cu):
// dx[t] = sum over levels l in order of dx_sel[position(l, t / c_l)] / c_l, for dq, dk and dv.
//
// The walk of token_groups.cuh: a thread owns one 16-byte vector of U consecutive tokens
// t0 .. t0 + U - 1 of one head (t0 a multiple of U, U <= p), loads U + L - 1 position entries
// and at most U + L - 1 rows per tensor in one round trip. No shared memory, no barrier, no
// atomics. The sums are those of the staged kernel (gather.cu): fp32 from +0.0,
// `acc += grad * (1 / c_l)` level by level in order, unselected entries skipped, rounded once:
// the same bits.
#include <type_traits>

#include "cuda/check.hpp"
#include "cuda/gather_backward_direct.hpp"
#include "cuda/token_groups.cuh"
#include "cuda/vec.cuh"

namespace lighthouse::cuda {

namespace {

constexpr int kThreads = 256;

struct GatherBackwardDirectArgs {
  Geometry g;
  const std::int32_t* position;  // [BH, P]
  const void* dsel[3];           // [BH, S, D]
  TokenTensor dx[3];
  std::int64_t groups;  // token groups per (batch, head): N / U
};

// The walk of token_groups.cuh with group m covering tokens m U .. m U + U - 1 (anchor m U:
// entry t / c_l of level l spreads to token t). NT: tensors handled together (1 or 3).
template <typename T, int U, int L, int NT>
__global__ void __launch_bounds__(kThreads, NT == 1 ? 4 : 2)
    gather_backward_direct_kernel(const GatherBackwardDirectArgs a) {
  constexpr int V = kVec<T>;
  const Geometry& g = a.g;
  const int v = static_cast<int>(threadIdx.x);
  DirectThread<U, L, 0> me(g, a.position, a.groups);
  if (!me.start()) return;
  while (true) {
    const std::int64_t t0 = me.first_token();
    const std::int64_t bh = me.bh();
    // 1. This group's rows of every tensor, all in flight together.
    uint4 fine[NT][U], coarse[NT][L - 1];
#pragma unroll
    for (int x = 0; x < NT; ++x) {
      load_group_rows<T, U, L>(me.cur,
                               static_cast<const T*>(a.dsel[x]) + bh * g.S * g.head_dim + v * V,
                               g.head_dim, fine[x], coarse[x]);
    }
    // 2. The next group's position entries, in flight while this group's rows arrive.
    GroupWalk next;
    GroupLookup<U, L> nxt;
    const bool more = me.prefetch(next, nxt);
    // 3. Per token and tensor: the levels in order, as the staged kernel sums them: from +0.0,
    // an unselected entry adding nothing. Its row here is zero, and adding 0 * (1 / c_l) = +0.0
    // is exact (the sum starts at +0.0, so it is never -0.0): no branches. The coarse rows are
    // shared by the U tokens: unpacked once.
#pragma unroll
    for (int x = 0; x < NT; ++x) {
      float shared[L - 1][V];
#pragma unroll
      for (int l = 0; l < L - 1; ++l) unpack<T>(coarse[x][l], shared[l]);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        float acc[V];
        unpack<T>(fine[x][u], acc);
        const float one = 1.0f;  // level 1: c = 1 (kept as a product: the staged form)
#pragma unroll
        for (int e = 0; e < V; ++e) acc[e] = 0.f + acc[e] * one;
#pragma unroll
        for (int l = 0; l < L - 1; ++l) {
          const float inv_c = ldexpf(1.0f, -(l + 1) * g.log2_pool);  // exact: a power of two
#pragma unroll
          for (int e = 0; e < V; ++e) acc[e] += shared[l][e] * inv_c;
        }
        store16(token_ptr_mut<T>(a.dx[x], me.at.b, t0 + u, me.h, v * V), pack<T>(acc));
      }
    }
    if (!more) break;
    me.advance(next, nxt);
  }
}

template <typename T, int U, int L, int NT>
void launch(const Geometry& g, const std::int32_t* position, const void* const* dsel,
            const TokenTensor* dx, cudaStream_t stream) {
  GatherBackwardDirectArgs a{};
  a.g = g;
  a.position = position;
  for (int x = 0; x < NT; ++x) {
    a.dsel[x] = dsel[x];
    a.dx[x] = dx[x];
  }
  a.groups = g.seq / U;
  const auto kernel = gather_backward_direct_kernel<T, U, L, NT>;
  const DirectShape shape =
      direct_shape(g, kernel, kThreads, static_cast<int>(g.head_dim / kVec<T>), a.groups,
                   "launch_gather_backward");
  kernel<<<shape.grid, shape.block, 0, stream>>>(a);
  CUDA_CHECK_LAUNCH("gather_backward_direct_kernel");
}

template <typename T, int NT>
void launch_levels(const Geometry& g, const std::int32_t* position, const void* const* dsel,
                   const TokenTensor* dx, cudaStream_t stream) {
  const auto by_levels = [&](auto u) {
    constexpr int U = decltype(u)::value;
    switch (g.levels) {
      case 2:
        return launch<T, U, 2, NT>(g, position, dsel, dx, stream);
      case 3:
        return launch<T, U, 3, NT>(g, position, dsel, dx, stream);
      default:
        return launch<T, U, 4, NT>(g, position, dsel, dx, stream);
    }
  };
  if (g.log2_pool >= 2) {
    by_levels(std::integral_constant<int, 4>{});
  } else {
    by_levels(std::integral_constant<int, 2>{});
  }
}

}  // namespace

bool gather_backward_direct_supported(const Geometry& g) {
  return g.levels >= 2 && g.levels <= kGatherBackwardDirectLevels && g.log2_pool >= 1;
}

void launch_gather_backward_direct(const Geometry& g, DType dtype, const std::int32_t* position,
                                   const void* const* dsel, const TokenTensor* dx, int count,
                                   cudaStream_t stream) {
  if (!gather_backward_direct_supported(g) || (count != 1 && count != 3)) {
    throw Error("launch_gather_backward_direct: unsupported geometry or tensor count");
  }
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    if (count == 1) {
      launch_levels<T, 1>(g, position, dsel, dx, stream);
    } else {
      launch_levels<T, 3>(g, position, dsel, dx, stream);
    }
  });
}

}  // namespace lighthouse::cuda
