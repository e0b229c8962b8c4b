// The "direct" walk shared by the forward scatter (scatter.cu) and the gather's backward
// (gather_backward_direct.cu): both add up, for every token, the rows of the L entries that cover
// it, one per level, without staging anything in shared memory.
//
// A thread owns one 16-byte vector of U consecutive tokens of one head. The group is aligned so
// that every level above the tokens gives all U tokens the same entry (U <= p), so a thread
// loads U + L - 1 position entries and at most as many rows, all in flight together. A thread
// keeps its head and walks the (batch, token group) pairs with a fixed stride, carrying the
// batch instead of dividing; the next group's position entries are loaded before this group's
// rows are waited for, so each group costs one exposed round trip.
//
// The two users differ only in which entry covers a token: the scatter adds entry
// (t + 1) / c_l - 1 of level l to token t (an entry's output starts at its block's last token),
// the gather's backward spreads entry t / c_l. Both are `(anchor >> l log2 p) - back` with the
// group's anchor a multiple of U: anchor = t0 + back for the group's first token t0.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/check.hpp"
#include "cuda/stages.hpp"
#include "cuda/vec.cuh"

namespace lighthouse::cuda {

// Position entries of one token group: per token (level 1) and shared (levels 2..L); -1 where
// the token does not exist or the entry is not selected.
template <int U, int L>
struct GroupLookup {
  std::int32_t fine[U];
  std::int32_t coarse[L - 1];
};

// Issues the position loads of the group whose anchor (first token + Back) is `anchor`; nothing
// waits here. `position_bh` is the (batch, head)'s [P] slice of the position map. 32-bit
// arithmetic: pyramid indices are int32, so N, P < 2^31 (check_supported refuses larger pyramids).
// Level 1 is at pyramid offset 0.
template <int U, int L, int Back>
__device__ __forceinline__ GroupLookup<U, L> load_group_lookup(const Geometry& g,
                                                               const std::int32_t* position_bh,
                                                               int anchor) {
  GroupLookup<U, L> r;
  const auto seq = static_cast<unsigned>(g.seq);
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int t = anchor - Back + u;  // -1 (Back = 1, first group) or past the end: no token
    r.fine[u] = static_cast<unsigned>(t) < seq ? __ldg(position_bh + t) : -1;
  }
#pragma unroll
  for (int l = 1; l < L; ++l) {
    const int e = (anchor >> (l * g.log2_pool)) - Back;
    r.coarse[l - 1] = e >= 0 ? __ldg(position_bh + static_cast<int>(g.offset[l]) + e) : -1;
  }
  return r;
}

// Issues the loads of the rows a lookup names (zero rows where it names none), for one thread's
// 16-byte vector: `sel` points at that vector of row 0 of the (batch, head)'s [S, D] block.
template <typename T, int U, int L>
__device__ __forceinline__ void load_group_rows(const GroupLookup<U, L>& lk, const T* sel,
                                                std::int64_t head_dim, uint4 (&fine)[U],
                                                uint4 (&coarse)[L - 1]) {
  const uint4 zero = make_uint4(0, 0, 0, 0);
#pragma unroll
  for (int u = 0; u < U; ++u)
    fine[u] = lk.fine[u] >= 0 ? load16(sel + lk.fine[u] * head_dim) : zero;
#pragma unroll
  for (int l = 0; l < L - 1; ++l) {
    coarse[l] = lk.coarse[l] >= 0 ? load16(sel + lk.coarse[l] * head_dim) : zero;
  }
}

// One thread's place in the (batch, token group) walk; 32-bit coordinates (registers): groups <
// N < 2^31 (pyramid indices are int32) and the stride is at most the resident threads.
struct GroupWalk {
  int b = 0, m = 0;  // batch, group within the batch

  // The thread's first pair; false when it has none.
  __device__ __forceinline__ bool start(std::int64_t batch, std::int64_t groups) {
    const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.z + threadIdx.z;
    if (first >= batch * groups) return false;
    b = static_cast<int>(first / groups);
    m = static_cast<int>(first - b * groups);
    return true;
  }
  // The pair `gridDim.x * blockDim.z` further on (b == batch: past the end).
  __device__ __forceinline__ GroupWalk next(std::int64_t groups) const {
    GroupWalk n = *this;
    std::int64_t m_next = std::int64_t{m} + gridDim.x * blockDim.z;
    while (m_next >= groups) {
      m_next -= groups;
      ++n.b;
    }
    n.m = static_cast<int>(m_next);
    return n;
  }
};

// One direct-kernel thread: its head (fixed), its (batch, group) pair and that group's position
// entries. The kernels' loop is: load the rows `cur` names; prefetch() the next group's entries
// (in flight while the rows arrive); sum and store; advance().
template <int U, int L, int Back>
struct DirectThread {
  const Geometry& g;
  const std::int32_t* position;  // [BHkv, P]: head h reads row (b H + h) / group
  std::int64_t groups;           // token groups per (batch, head)
  std::int64_t h = 0;
  GroupWalk at;
  GroupLookup<U, L> cur;

  __device__ __forceinline__ DirectThread(const Geometry& geometry,
                                          const std::int32_t* position_map,
                                          std::int64_t group_count)
      : g(geometry), position(position_map), groups(group_count) {}

  // False when the thread has no head or no pair; else the first group's entries are issued.
  __device__ __forceinline__ bool start() {
    h = static_cast<std::int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
    if (h >= g.heads || !at.start(g.batch, groups)) return false;
    cur = lookup(at);
    return true;
  }
  std::int64_t __device__ __forceinline__ bh() const { return at.b * g.heads + h; }
  // The group's first token (-1 for the scatter's first group, which has no token there).
  std::int64_t __device__ __forceinline__ first_token() const {
    return std::int64_t{at.m} * U - Back;
  }
  // Issues the next pair's entries (nothing waits); false past the end.
  __device__ __forceinline__ bool prefetch(GroupWalk& next, GroupLookup<U, L>& entries) const {
    next = at.next(groups);
    if (next.b >= g.batch) return false;
    entries = lookup(next);
    return true;
  }
  __device__ __forceinline__ void advance(const GroupWalk& next, const GroupLookup<U, L>& entries) {
    at = next;
    cur = entries;
  }

 private:
  __device__ __forceinline__ GroupLookup<U, L> lookup(const GroupWalk& w) const {
    return load_group_lookup<U, L, Back>(
        g, position + (w.b * g.heads + h) / g.group * g.pyramid_size, w.m * U);
  }
};

// Launch shape of a direct kernel: block (D / V vectors, heads per block, groups per block),
// grid (group strides, head blocks), sized to fill the device once with `kernel`'s resident
// blocks; every thread then strides over the (batch, group) pairs.
struct DirectShape {
  dim3 grid, block;
};

template <typename Kernel>
DirectShape direct_shape(const Geometry& g, Kernel kernel, int max_threads, int vectors_per_row,
                         std::int64_t groups, const char* who) {
  const int rows = std::max(1, max_threads / vectors_per_row);  // (head, group) rows per block
  const int heads = static_cast<int>(std::min<std::int64_t>(g.heads, rows));
  const int per_block = std::min(64, rows / heads);  // blockDim.z <= 64
  const std::int64_t head_blocks = (g.heads + heads - 1) / heads;
  if (head_blocks > 65535) {
    throw Error(std::string(who) + ": grid too large (" + std::to_string(g.heads) + " heads)");
  }
  DirectShape s;
  s.block = dim3(static_cast<unsigned>(vectors_per_row), static_cast<unsigned>(heads),
                 static_cast<unsigned>(per_block));
  const int threads = vectors_per_row * heads * per_block;
  const std::int64_t resident = resident_blocks(kernel, threads, 0);
  const std::int64_t wanted = (g.batch * groups + per_block - 1) / per_block;
  const std::int64_t x = std::max<std::int64_t>(1, std::min(wanted, resident / head_blocks));
  s.grid = dim3(static_cast<unsigned>(x), static_cast<unsigned>(head_blocks));
  return s;
}

}  // namespace lighthouse::cuda
