// The selection stage (hierarchical selection) and the causal order on the GPU: one block per
// (batch, head, tile), everything in shared memory except the scores it reads and the indices it
// writes. Three rules (Config::selection), one kernel each (a template argument), sharing
// everything but the choice of the 128 kept candidates per level.
//
// Original selection. At each level >= 2 the tile keeps the 64 candidates ranked highest by query
// score, then the 64 ranked highest by key score among the rest. Ranking: higher score first, ties
// to the lower candidate position (the CPU backend's rule, so both pick identical indices). A
// candidate's rank key is the order-preserving unsigned image of its float score; the 64 best
// are found by an MSB-first radix select over those keys (4 histogram passes of 8 bits over the
// candidates), the ties at the threshold resolved by candidate position with an ordered block
// scan, and the 64 winners sorted by (key desc, position asc) by rank counting. Each level's
// keys are read from L2 once into shared memory (the passes are latency-bound: a pass over
// shared memory instead of L2 saves a round trip each), unless the coarsest level's candidate
// list (C entries, any size) is longer than kMaxStagedKeys; then the passes read L2. The lower
// levels' lists are implicit (child j of parent slot j / p).
//
// Causal selection (docs/SPEC.md). Candidates are in position order (the kept parents
// are). A candidate's key is the order key of max(previous block's pooled score, first token's
// score). Eligibility (beats the w previous candidates) is one ballot per 32 consecutive
// candidates, so that thread t of the block then holds the bits of candidates [32t, 32t + 32);
// the streaming rule's three running counts (eligible by query; eligible by key and not kept by
// query; turned down) are three block-wide exclusive sums (CUB) over those words, which gives
// every decision of the sequential rule at once. Kept candidates are written in position order.
//
// Stride selection (docs/SPEC.md), the causal rule's content-free control: the m-th kept
// candidate is ceil((m + 1) n / 128) - 1, one thread per m; no score is read.
//
// Causal order without a sort. Entries of a tile occupy the tile's own token range, so tiles
// are independent and each fills S / tiles consecutive slots. Within a tile the key order is a
// post-order walk of the selection tree: the coarsest entries in index order, a kept entry
// preceded by its p children (each with its own subtree) in index order. So each entry's slot is
// its subtree's start plus its subtree size - 1, with subtree sizes computed bottom-up over the
// 128 kept entries per level and starts top-down.
#include <climits>
#include <type_traits>

#include <cub/block/block_scan.cuh>

#include "cuda/check.hpp"
#include "cuda/stages.hpp"
#include "cuda/vec.cuh"

namespace lighthouse::cuda {

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kKeep = 128;  // entries kept per tile and level (== kTileSize)
constexpr int kHalf = kKeep / 2;
constexpr int kMaxStagedKeys = 8192;  // candidates per level whose keys may be staged

struct SelectionArgs {
  Geometry g;
  const float* score[2];  // q, k: [BH, P - N]
  const float* first[2];  // q, k: [BH, N / p] first-token norms (causal selection only)
  std::int32_t* indices;  // [BH, S]
  std::int32_t* position; // [BH, P]: every entry written here (-1 when not selected)
  int staged;             // keys per level and score staged in shared memory (0: none)
};

struct Scratch {
  unsigned hist[256];
  int warp_count[kWarps];
  int sel_j[kHalf];
  unsigned sel_key[kHalf];
  int count;
  unsigned digit;
  int above, ties, jcut;
  int sorted_cand[kKeep];  // the coarsest level's kept candidates in index order
  int rank_slot[kKeep];    // kept slot of the r-th of them
  int extra[kKeep + 1];    // exclusive prefix of (subtree size - 1) in that order
};

// The causal rule's extra scratch: eligibility words of one round of 32 * kThreads candidates and
// the block scan's storage.
using BlockScan = cub::BlockScan<int, kThreads>;
struct CausalScratch {
  unsigned eligible[2][kThreads];  // [q, k][word]: bit b of word w = candidate 32 w + b
  typename BlockScan::TempStorage scan;
};

// Unsigned integers that order like the floats (NaN aside).
__device__ __forceinline__ unsigned order_key(float f) {
  const unsigned u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The candidates of one level of one tile: position j -> level-local entry index.
struct Level {
  const float* score[2];  // this level's scores (q, k), indexed by entry
  const int* parent;      // kept entries of the level above (slot order), or null at the top
  std::int64_t first;     // top level: the tile's first entry
  int log2_pool;
  const unsigned* staged;  // [2][stride] keys by position, or null: read the scores
  int stride;
  // Causal selection: the first-token norms of this (batch, head) and the shift from an entry
  // of this level to its first token's level-2 block ((l - 1) log2 p); null in the original.
  const float* first_token[2];
  int first_shift;

  __device__ std::int64_t entry(int j) const {
    if (!parent) return first + j;
    return (static_cast<std::int64_t>(parent[j >> log2_pool]) << log2_pool) |
           (j & ((1 << log2_pool) - 1));
  }
  // Original: the block's pooled score. Causal: max(the previous block's pooled score, the
  // block's first token's score), a prediction from tokens up to the block's first.
  __device__ unsigned load_key(int x, int j) const {
    const std::int64_t i = entry(j);
    if (!first_token[x]) return order_key(__ldg(score[x] + i));
    float s = __ldg(first_token[x] + (i << first_shift));
    if (i > 0) s = fmaxf(__ldg(score[x] + i - 1), s);  // no NaN here: the same max as the CPU's
    return order_key(s);
  }
  __device__ unsigned key(int x, int j) const {
    return staged ? staged[x * stride + j] : load_key(x, j);
  }
};

// The selected set of a top-64: key above `key`, or equal to it at a position <= jcut.
struct Cut {
  unsigned key;
  int jcut;
  __device__ bool holds(unsigned u, int j) const { return u > key || (u == key && j <= jcut); }
};

struct NoExclusion {
  __device__ bool operator()(int) const { return false; }
};
struct ExcludeQuerySelected {
  Level level;
  Cut cut;
  __device__ bool operator()(int j) const { return cut.holds(level.key(0, j), j); }
};

// The 64 best of the n candidates of `level` by score x, skipping excluded ones; writes their
// positions to out[0..63] best first and returns the cut that defines the set. At least 64
// candidates must be eligible. All threads of the block call it.
template <class Excluded>
__device__ Cut top64(const Level& level, int x, int n, Excluded excluded, Scratch& sh, int* out) {
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  unsigned prefix = 0, mask = 0;
  int need = kHalf;  // how many are still to be taken among keys matching the prefix
  int ties = 0;
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    for (int i = tid; i < 256; i += kThreads) sh.hist[i] = 0;
    __syncthreads();
    // Uniform trip count (whole warps reach the match below); four independent key loads in
    // flight per thread, since a long coarsest level makes this loop latency-bound.
    for (int base = 0; base < n; base += 4 * kThreads) {
      unsigned digit[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int j = base + u * kThreads + tid;
        digit[u] = 256;  // none
        if (j < n && !excluded(j)) {
          const unsigned key = level.key(x, j);
          if ((key & mask) == prefix) digit[u] = (key >> shift) & 255u;
        }
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const unsigned peers = __match_any_sync(0xffffffffu, digit[u]);
        if (digit[u] != 256 && lane == __ffs(peers) - 1) {
          atomicAdd(&sh.hist[digit[u]], static_cast<unsigned>(__popc(peers)));
        }
      }
    }
    __syncthreads();
    if (warp == 0) {
      // Lane l holds bins 255 - 8l down to 248 - 8l; find the bin where the count from the top
      // reaches `need`.
      int local[8];
      int sum = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        local[i] = static_cast<int>(sh.hist[255 - 8 * lane - i]);
        sum += local[i];
      }
      int incl = sum;
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, incl, off);
        if (lane >= off) incl += y;
      }
      const int excl = incl - sum;
      if (excl < need && need <= incl) {
        int cum = excl;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          if (cum < need && need <= cum + local[i]) {
            sh.digit = static_cast<unsigned>(255 - 8 * lane - i);
            sh.above = cum;
            sh.ties = local[i];
          }
          cum += local[i];
        }
      }
    }
    __syncthreads();
    prefix |= sh.digit << shift;
    mask |= 255u << shift;
    need -= sh.above;
    ties = sh.ties;
  }
  // prefix is now the 64th best key; `need` of the `ties` candidates with that key are taken,
  // the lowest positions first.
  int jcut = INT_MAX;
  if (need < ties) {
    int seen = 0;
    for (int base = 0; base < n; base += kThreads) {
      const int j = base + tid;
      const bool tie = j < n && !excluded(j) && level.key(x, j) == prefix;
      const unsigned ballot = __ballot_sync(0xffffffffu, tie);
      if (lane == 0) sh.warp_count[warp] = __popc(ballot);
      __syncthreads();
      int before = 0, total = 0;
      for (int w = 0; w < kWarps; ++w) {
        const int c = sh.warp_count[w];
        before += w < warp ? c : 0;
        total += c;
      }
      const int rank = seen + before + __popc(ballot & ((1u << lane) - 1u));
      if (tie && rank == need - 1) sh.jcut = j;
      seen += total;
      __syncthreads();
      if (seen >= need) break;  // uniform: every thread has the same `seen`
    }
    jcut = sh.jcut;
  }
  const Cut cut{prefix, jcut};

  if (tid == 0) sh.count = 0;
  __syncthreads();
  for (int j = tid; j < n; j += kThreads) {
    if (excluded(j)) continue;
    const unsigned u = level.key(x, j);
    if (cut.holds(u, j)) {
      const int slot = atomicAdd(&sh.count, 1);
      if (slot < kHalf) {
        sh.sel_j[slot] = j;
        sh.sel_key[slot] = u;
      }
    }
  }
  __syncthreads();
  if (tid < kHalf) {
    const unsigned u = sh.sel_key[tid];
    const int j = sh.sel_j[tid];
    int rank = 0;
    for (int o = 0; o < kHalf; ++o) {
      const unsigned uo = sh.sel_key[o];
      rank += (uo > u || (uo == u && sh.sel_j[o] < j)) ? 1 : 0;
    }
    out[rank] = j;
  }
  __syncthreads();
  return cut;
}

// The `count` lowest set bits of `bits` (all of them when count >= popc, none when count <= 0).
__device__ __forceinline__ unsigned lowest_bits(unsigned bits, int count) {
  unsigned out = 0;
  for (int c = 0; c < count && bits; ++c) {
    const unsigned low = bits & (0u - bits);
    out |= low;
    bits ^= low;
  }
  return out;
}

// Candidate j's key (score x) beats each of the `window` keys before it.
__device__ bool beats_window(const Level& level, int x, int j, int window) {
  const unsigned u = level.key(x, j);
  for (int i = max(0, j - window); i < j; ++i) {
    if (!(u > level.key(x, i))) return false;
  }
  return true;
}

// The causal rule on the n candidates of `level` (n >= 128): writes the positions of the 128 kept
// candidates to kept[0..127] in position order. The sequential rule -- for j in order: keep by
// query if eligible and fewer than 64 were; else by key if eligible and fewer than 64 were; else
// keep if n - 128 were turned down already; else turn down -- in closed form: with Q(j) the number
// of query-eligible candidates before j, K(j) the number of key-eligible ones not kept by query
// before j and R(j) the number before j kept by neither quota, j is kept by query when eligible
// and Q(j) < 64, by key when eligible, not kept by query and K(j) < 64, and at all when either
// holds or R(j) >= n - 128; its slot is j - min(R(j), n - 128). All threads call it.
__device__ void keep_causal(const Level& level, int n, CausalScratch& cs, int* kept) {
  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int ratio = n / kHalf;
  const int window[2] = {ratio - 1, ratio - 2};
  const int cap = n - kKeep;  // turned down at most
  int carry[3] = {0, 0, 0};   // Q, K, R over the earlier rounds (the same in every thread)
  for (int round = 0; round < n; round += 32 * kThreads) {
    // 1. Eligibility words: word w (lane b) of the round is candidate round + 32 w + b.
    const int words = min(kThreads, (n - round + 31) / 32);
    for (int w = warp; w < words; w += kWarps) {
      const int j = round + 32 * w + lane;
      for (int x = 0; x < 2; ++x) {
        const bool e = j < n && beats_window(level, x, j, window[x]);
        const unsigned word = __ballot_sync(0xffffffffu, e);
        if (lane == 0) cs.eligible[x][w] = word;
      }
    }
    __syncthreads();
    // 2. Thread t: candidates [first, first + count) in bits 0..count-1.
    const int first = round + 32 * tid;
    const int count = max(0, min(32, n - first));
    const unsigned valid = count == 32 ? 0xffffffffu : (1u << count) - 1u;
    const unsigned eq = cs.eligible[0][tid] & valid, ek = cs.eligible[1][tid] & valid;
    int before, total;
    BlockScan(cs.scan).ExclusiveSum(__popc(eq), before, total);
    __syncthreads();
    const unsigned by_q = lowest_bits(eq, kHalf - (carry[0] + before));
    carry[0] += total;
    const unsigned ek_rest = ek & ~by_q;
    BlockScan(cs.scan).ExclusiveSum(__popc(ek_rest), before, total);
    __syncthreads();
    const unsigned by_k = lowest_bits(ek_rest, kHalf - (carry[1] + before));
    carry[1] += total;
    const unsigned quota = by_q | by_k;
    const unsigned neither = valid & ~quota;
    BlockScan(cs.scan).ExclusiveSum(__popc(neither), before, total);
    __syncthreads();
    for (int b = 0; b < count; ++b) {
      const int r = carry[2] + before + __popc(neither & ((1u << b) - 1u));  // R(j)
      if (((quota >> b) & 1u) || r >= cap) kept[first + b - min(r, cap)] = first + b;
    }
    carry[2] += total;
  }
  __syncthreads();
}

enum class Rule { kOriginal, kCausal, kStride };

// The stride rule: kept[m] = ceil((m + 1) n / 128) - 1, the last candidate of the m-th of 128
// runs of consecutive candidates (src/cpu/selection.cpp's stride_kept). All threads call it.
__device__ void keep_stride(int n, int* kept) {
  const int m = threadIdx.x;
  if (m < kKeep) {
    kept[m] = static_cast<int>(((m + 1) * static_cast<std::int64_t>(n) + kKeep - 1) / kKeep - 1);
  }
  __syncthreads();
}

template <Rule kRule>
__global__ void __launch_bounds__(kThreads, 1) selection_kernel(const SelectionArgs a) {
  constexpr bool kCausal = kRule == Rule::kCausal;
  extern __shared__ int dyn[];
  __shared__ Scratch sh;
  // Only the causal kernel has it: the original kernel's shared memory stays as it was.
  [[maybe_unused]] __shared__ std::conditional_t<kCausal, CausalScratch, char> causal_sh;

  const Geometry& g = a.g;
  const int L = g.levels;
  const int top = L - 1;
  const int p = g.pool;
  const int lp = g.log2_pool;
  const int C = static_cast<int>(g.tile_entries);
  const std::int64_t N = g.seq, P = g.pyramid_size, S = g.S;
  const std::int64_t tile = blockIdx.x % g.tiles;
  const std::int64_t bh = blockIdx.x / g.tiles;
  const std::int64_t tile_base = tile * (C + static_cast<std::int64_t>(top) * p * kKeep);
  const int tid = threadIdx.x;

  // Per level l >= 1: kept entry index, kept candidate position, subtree size, subtree start,
  // each [kKeep], by kept slot (original: 0..63 by query score, 64..127 by key score, best
  // first; causal and stride: position order).
  auto kept_idx = [&](int l) { return dyn + l * 4 * kKeep; };
  auto kept_cand = [&](int l) { return dyn + l * 4 * kKeep + kKeep; };
  auto sub_size = [&](int l) { return dyn + l * 4 * kKeep + 2 * kKeep; };
  auto sub_start = [&](int l) { return dyn + l * 4 * kKeep + 3 * kKeep; };
  int* cslot = dyn + L * 4 * kKeep;  // [p * kKeep]: candidate -> kept slot of the current level
  // [2][a.staged]: the current level's keys (q, k) by candidate position
  auto* keys = reinterpret_cast<unsigned*>(cslot + p * kKeep);

  auto emit = [&](int l, std::int64_t i, std::int64_t pos) {
    const std::int64_t s = tile_base + pos;
    const std::int64_t index = g.offset[l] + i;
    a.indices[bh * S + s] = static_cast<std::int32_t>(index);
    a.position[bh * P + index] = static_cast<std::int32_t>(s);
  };

  // 0. The tile's share of the position map starts as -1 ("not selected"): at level l it owns
  // entries [tile C p^(L-1-l), (tile + 1) C p^(L-1-l)). Ordered before the emits below by the
  // barriers in between; the stores overlap the selection's latency-bound passes.
  for (int l = 0; l <= top; ++l) {
    const std::int64_t count = static_cast<std::int64_t>(C) << ((top - l) * lp);
    std::int32_t* dst = a.position + bh * P + g.offset[l] + tile * count;
    for (std::int64_t i = tid; i < count; i += kThreads) dst[i] = -1;
  }
  __syncthreads();

  // 1. Selection, coarse to fine.
  for (int l = top; l >= 1; --l) {
    Level level;
    for (int x = 0; x < 2; ++x) level.score[x] = a.score[x] + bh * (P - N) + (g.offset[l] - N);
    level.parent = l == top ? nullptr : kept_idx(l + 1);
    level.first = tile * C;
    level.log2_pool = lp;
    level.staged = nullptr;
    level.stride = a.staged;
    for (int x = 0; x < 2; ++x)
      level.first_token[x] = kCausal ? a.first[x] + bh * (N >> lp) : nullptr;
    level.first_shift = (l - 1) * lp;
    const int n = l == top ? C : p * kKeep;
    if (kRule != Rule::kStride && n <= a.staged) {
      for (int j = tid; j < n; j += kThreads) {
        const unsigned kq = level.load_key(0, j), kk = level.load_key(1, j);
        keys[j] = kq;
        keys[a.staged + j] = kk;
      }
      __syncthreads();
      level.staged = keys;
    }
    if constexpr (kRule == Rule::kCausal) {
      keep_causal(level, n, causal_sh, kept_cand(l));
    } else if constexpr (kRule == Rule::kStride) {
      keep_stride(n, kept_cand(l));
    } else {
      const Cut by_q = top64(level, 0, n, NoExclusion{}, sh, kept_cand(l));
      top64(level, 1, n, ExcludeQuerySelected{level, by_q}, sh, kept_cand(l) + kHalf);
    }
    if (tid < kKeep) kept_idx(l)[tid] = static_cast<int>(level.entry(kept_cand(l)[tid]));
    __syncthreads();
  }

  // 2. Subtree sizes, fine to coarse: a kept entry holds itself, its p children and their
  // subtrees.
  for (int l = 1; l <= top; ++l) {
    if (tid < kKeep) {
      int size = 1 + p;
      if (l >= 2) {
        for (int s = 0; s < kKeep; ++s) {
          if ((kept_cand(l - 1)[s] >> lp) == tid) size += sub_size(l - 1)[s] - 1;
        }
      }
      sub_size(l)[tid] = size;
    }
    __syncthreads();
  }

  // 3. The coarsest level: entry j's subtree starts after j entries and the extra entries of
  // the kept subtrees before it.
  const int nk = top >= 1 ? kKeep : 0;
  if (tid < nk) {
    const int c = kept_cand(top)[tid];
    int r = 0;
    for (int s = 0; s < kKeep; ++s) r += kept_cand(top)[s] < c ? 1 : 0;
    sh.sorted_cand[r] = c;
    sh.rank_slot[r] = tid;
  }
  __syncthreads();
  if (tid == 0) {
    sh.extra[0] = 0;
    for (int r = 0; r < nk; ++r) sh.extra[r + 1] = sh.extra[r] + sub_size(top)[sh.rank_slot[r]] - 1;
  }
  __syncthreads();
  if (tid < nk) {
    const int slot = sh.rank_slot[tid];
    const int start = sh.sorted_cand[tid] + sh.extra[tid];
    sub_start(top)[slot] = start;
    emit(top, tile * C + sh.sorted_cand[tid], start + sub_size(top)[slot] - 1);
  }
  for (int j = tid; j < C; j += kThreads) {
    int lo = 0, hi = nk;  // r = number of kept candidates below j
    while (lo < hi) {
      const int mid = (lo + hi) >> 1;
      if (sh.sorted_cand[mid] < j)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo < nk && sh.sorted_cand[lo] == j) continue;  // kept: emitted above
    emit(top, tile * C + j, j + sh.extra[lo]);
  }
  __syncthreads();

  // 4. Finer levels: a child's subtree starts at its parent's start plus its elder siblings'
  // subtrees.
  for (int l = top - 1; l >= 0; --l) {
    const int n = p * kKeep;
    if (l >= 1) {
      for (int j = tid; j < n; j += kThreads) cslot[j] = -1;
      __syncthreads();
      if (tid < kKeep) cslot[kept_cand(l)[tid]] = tid;
      __syncthreads();
    }
    const int* parent_idx = kept_idx(l + 1);
    const int* parent_start = sub_start(l + 1);
    for (int j = tid; j < n; j += kThreads) {
      const int s = j >> lp;
      const int r = j & (p - 1);
      int start = parent_start[s] + r;
      int slot = -1;
      if (l >= 1) {
        for (int r2 = 0; r2 < r; ++r2) {
          const int sib = cslot[(s << lp) + r2];
          if (sib >= 0) start += sub_size(l)[sib] - 1;
        }
        slot = cslot[j];
      }
      int pos = start;
      if (slot >= 0) {
        sub_start(l)[slot] = start;
        pos = start + sub_size(l)[slot] - 1;
      }
      emit(l, (static_cast<std::int64_t>(parent_idx[s]) << lp) + r, pos);
    }
    __syncthreads();
  }
}

}  // namespace

void launch_selection(const Geometry& g, const float* score_q, const float* score_k,
                      const float* first_q, const float* first_k, std::int32_t* indices,
                      std::int32_t* position, cudaStream_t stream) {
  SelectionArgs a{};
  a.g = g;
  a.score[0] = score_q;
  a.score[1] = score_k;
  a.first[0] = first_q;
  a.first[1] = first_k;
  if (g.causal && (!first_q || !first_k)) throw Error("launch_selection: no first-token scores");
  a.indices = indices;
  a.position = position;
  const std::int64_t blocks = g.batch * g.heads * g.tiles;
  if (blocks > 0x7fffffff) throw Error("launch_selection: too many blocks");
  // Every level's candidates fit in the staged keys, or none are staged.
  const std::int64_t longest = std::max<std::int64_t>(g.tile_entries, g.pool * kKeep);
  a.staged = longest <= kMaxStagedKeys ? static_cast<int>(longest) : 0;
  const std::size_t smem =
      (static_cast<std::size_t>(g.levels) * 4 * kKeep + static_cast<std::size_t>(g.pool) * kKeep +
       2 * static_cast<std::size_t>(a.staged)) *
      sizeof(int);
  const auto kernel = g.causal   ? selection_kernel<Rule::kCausal>
                      : g.stride ? selection_kernel<Rule::kStride>
                                 : selection_kernel<Rule::kOriginal>;
  const std::size_t fixed = sizeof(Scratch) + (g.causal ? sizeof(CausalScratch) : 0);
  if (smem + fixed > 48 * 1024) {  // beyond the default limit (many levels, large pool)
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(smem)));
  }
  kernel<<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(a);
  CUDA_CHECK_LAUNCH("selection_kernel");
}

}  // namespace lighthouse::cuda
