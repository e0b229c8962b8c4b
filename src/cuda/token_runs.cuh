// Staging for the kernels that build every token's row from the gathered rows of its pyramid
// entries (the scatter, and the backward of the gather): out[t] = sum over levels l, in order,
// of rows[position(l, e_l(t))], with e_l(t) = ((t + k) >> (l log2 p)) - k (k = 1 for the scatter,
// whose entry i reaches tokens [i c + c - 1, i c + 2c - 2]; k = 0 for the gather backward).
//
// A block owns a run of consecutive tokens of one (batch, head). Reading a token's row this way
// costs two dependent round trips (the position map, then the rows); a thread per token would
// need its loads in registers for the whole wait, which caps the bytes in flight far below what
// the write bandwidth needs. Instead the block first loads the position entries of the run (one
// coalesced round trip), then copies every distinct row it needs into shared memory with
// cp.async (one round trip, no registers held; neighbouring tokens share their coarser entries,
// so each row is read once per block), and only then combines rows into tokens.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/stages.hpp"
#include "cuda/vec.cuh"
#include "lighthouse/error.hpp"

namespace lighthouse::cuda {

// 16 bytes global -> shared without a register; both addresses 16-byte aligned.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const auto s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
// Waits for this thread's cp.async copies (a __syncthreads must follow before others read them).
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
}

// The shape of a run: tokens per block and the shared memory it needs.
struct RunShape {
  int tokens = 0;       // TT, a power of two
  int max_entries = 0;  // bound on the distinct entries of all levels of one run
  std::size_t smem = 0;
};

// Entries of level l touched by TT consecutive tokens: TT at level 1, at most TT / c_l + 2
// above (a run need not start on a block boundary of the shifted map).
inline int run_entries(const Geometry& g, int tokens) {
  int entries = 0;
  for (int l = 0; l < g.levels; ++l) {
    const int shift = l * g.log2_pool;
    entries += l == 0 ? tokens : std::min(tokens, (shift >= 31 ? 0 : tokens >> shift) + 2);
  }
  return entries;
}

// The longest run (at most `max_tokens`) whose staged rows (`tensors` buffers of D elements of
// `element` bytes) fit in `budget` bytes of shared memory.
inline RunShape run_shape(const Geometry& g, int tensors, std::size_t element, int max_tokens,
                          std::size_t budget) {
  RunShape shape;
  const std::size_t row = static_cast<std::size_t>(g.head_dim) * element;
  for (int tokens = max_tokens; tokens >= 1; tokens /= 2) {
    shape.tokens = tokens;
    shape.max_entries = run_entries(g, tokens);
    shape.smem = static_cast<std::size_t>(shape.max_entries) * (tensors * row + sizeof(int));
    if (shape.smem <= budget) break;
  }
  return shape;
}

// Grid (runs, H, B) of the run kernels.
inline dim3 run_grid(const Geometry& g, int tokens) {
  const std::int64_t runs = (g.seq + tokens - 1) / tokens;
  if (runs > 0x7fffffff || g.heads > 65535 || g.batch > 65535) {
    throw Error("CUDA stage kernels: grid too large (" + std::to_string(runs) + " token runs, " +
                std::to_string(g.heads) + " heads, " + std::to_string(g.batch) + " batches)");
  }
  return dim3(static_cast<unsigned>(runs), static_cast<unsigned>(g.heads),
              static_cast<unsigned>(g.batch));
}

// Shared state of one run, carved from dynamic shared memory:
//   rows  uint4 [X][max_entries][nv]   staged rows (16-byte aligned, first)
//   pos   int   [max_entries]          position map entry (row in [0, S)) or -1
// plus, in static shared memory, the first entry and the slot base of every level.
struct RunLevels {
  std::int64_t first[kMaxLevels];  // e_l of the run's first token
  int base[kMaxLevels];            // slot of that entry in pos/rows
};

// Phase 1 and 2 of a run: fills `lv`, `pos` and `rows` for tokens [t0, t0 + tokens) (tokens
// already clipped to N) of row bh from the X gathered buffers sel[0..X); `shift_k` is k above.
// All threads of the block call it; on return every staged row is visible to the whole block.
template <int X>
__device__ void stage_run(const Geometry& g, const std::int32_t* position_bh,
                          const void* const* sel, std::int64_t bh, std::int64_t t0, int tokens,
                          int shift_k, int max_entries, int row_bytes, RunLevels& lv, int* pos,
                          uint4* rows) {
  const int tid = static_cast<int>(threadIdx.x);
  const int nthreads = static_cast<int>(blockDim.x);
  if (tid == 0) {
    int base = 0;
    for (int l = 0; l < g.levels; ++l) {
      const int shift = l * g.log2_pool;
      const std::int64_t lo = ((t0 + shift_k) >> shift) - shift_k;
      const std::int64_t hi = ((t0 + tokens - 1 + shift_k) >> shift) - shift_k;
      lv.first[l] = lo;
      lv.base[l] = base;
      base += static_cast<int>(hi - lo + 1);
    }
  }
  __syncthreads();
  // 1. The position map entries of every level (coalesced), -1 before the first entry.
  int total = 0;
  for (int l = 0; l < g.levels; ++l) {
    const int shift = l * g.log2_pool;
    const std::int64_t hi = ((t0 + tokens - 1 + shift_k) >> shift) - shift_k;
    const int count = static_cast<int>(hi - lv.first[l] + 1);
    for (int j = tid; j < count; j += nthreads) {
      const std::int64_t e = lv.first[l] + j;
      pos[lv.base[l] + j] = e >= 0 ? __ldg(position_bh + g.offset[l] + e) : -1;
    }
    total += count;
  }
  __syncthreads();
  // 2. The rows those entries point at, 16 bytes per copy, straight into shared memory.
  const int nv = row_bytes / 16;
  const std::int64_t row_stride = static_cast<std::int64_t>(g.S) * row_bytes;  // bytes per bh
#pragma unroll
  for (int x = 0; x < X; ++x) {
    const char* src = static_cast<const char*>(sel[x]) + bh * row_stride;
    uint4* dst = rows + static_cast<std::int64_t>(x) * max_entries * nv;
    for (int idx = tid; idx < total * nv; idx += nthreads) {
      const int j = idx / nv;
      const int v = idx - j * nv;
      const int s = pos[j];
      if (s >= 0) cp_async16(dst + idx, src + static_cast<std::int64_t>(s) * row_bytes + v * 16);
    }
  }
  cp_async_wait_all();
  __syncthreads();
}

}  // namespace lighthouse::cuda
