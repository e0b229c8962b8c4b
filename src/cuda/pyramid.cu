// The pyramid on the GPU: the scores of every pyramid level above the tokens and the means of the
// coarsest level, in one streaming pass over q, k and v (each read once, nothing staged).
//
// Work split. A "row group" of M lanes (M = the number of 8-element chunks of a row, rounded up
// to a power of two; 16 for D = 128) owns one (batch, head) and a span of tokens (a multiple of
// the coarsest block c_L), and walks the span token by token. Lane j holds elements
// [8j, 8j + 8) of every row it reads, so one token's q, k and v rows are three coalesced
// 16-byte loads per lane (two for float32), and U tokens' loads are issued together. Groups of
// a block are consecutive heads of the same tokens: a block reads whole [H, D] token rows. The
// grid strides over the groups, sized to fill the device once.
//
// Scores. A token's norm is the shared definition of core/scores.hpp: each lane sums its
// chunk's squares in float64 in d order, the chunk sums are combined by a butterfly over the
// lanes (neighbours first, the tree the CPU uses), then (float) sqrt, NaN -> -inf.
// The norms of up to 64 tokens are staged in shared memory (per group) and max-pooled into the
// levels 2..L; levels whose blocks are longer than 64 tokens keep a running maximum.
//
// Coarsest means. Each lane keeps fp32 sums of its chunk for q, k and v in registers, adds the
// tokens in order and writes sum / c_L (rounded once) when a coarsest block ends; the gather
// copies those rows instead of reading all N tokens a second time.
#include <cfloat>
#include <string>

#include "core/scores.hpp"
#include "cuda/check.hpp"
#include "cuda/stages.hpp"
#include "cuda/vec.cuh"

namespace lighthouse::cuda {

namespace {

constexpr int kThreads = 128;   // threads per block
constexpr int kMaxGroups = 32;  // row groups per block (small head dims: few lanes each)
constexpr int kChunk = 8;       // elements per lane: one chunk of the score's sum tree
static_assert(kChunk == kScoreChunk, "the GPU must sum a token's score as the CPU does");
constexpr int kNormTokens = 64;  // token norms staged per group before pooling
constexpr int kGroupFloats = 2 * kNormTokens + 2 * kMaxLevels;  // shared floats per group

struct PyramidArgs {
  Geometry g;
  int tensors;                // x[0..tensors) are read: q, k, v; or q alone, or k and v (GQA)
  TokenTensor x[3];           // q, k, v
  float* score[2];            // x[0], x[1]: [BH, P - N], or null (no scores of that tensor)
  float* first[2];            // x[0], x[1]: [BH, N / p] first-token norms (causal), or null
  void* coarse[3];            // [BH, n_L, D]
  int lanes;                  // M: lanes per row group, a power of two <= 32
  int groups;                 // row groups per block
  std::int64_t span;          // tokens per group: a power-of-two multiple of c_L
  std::int64_t spans;         // spans per (batch, head): N / span
  std::int64_t total_groups;  // B * H * spans
};

// Element i of a small register array, with an index known only at run time (unrolled selects
// keep the array in registers).
template <int N>
__device__ __forceinline__ double pick(const double (&v)[N], int i) {
  double r = v[0];
#pragma unroll
  for (int j = 1; j < N; ++j) r = i == j ? v[j] : r;
  return r;
}

// U: tokens whose loads are in flight together.
template <typename T, int U>
__global__ void __launch_bounds__(kThreads, 4) pyramid_kernel(const PyramidArgs a) {
  constexpr int V = kVec<T>;       // elements per 16-byte vector
  constexpr int VPL = kChunk / V;  // vectors per lane: 1 (16-bit types) or 2 (float32)
  extern __shared__ float smem[];

  const Geometry& g = a.g;
  const int M = a.lanes;
  const int grp = static_cast<int>(threadIdx.x) / M;  // blockDim.x == groups * M
  const int lane = static_cast<int>(threadIdx.x) % M;
  // The lanes of this group inside the warp: every shuffle and warp barrier names only them.
  const int warp_lane = static_cast<int>(threadIdx.x) & 31;
  const unsigned mask = M == 32 ? 0xffffffffu : ((1u << M) - 1u) << (warp_lane & ~(M - 1));
  float* norms = smem + grp * kGroupFloats;  // [2][kNormTokens]: q, k
  float* run = norms + 2 * kNormTokens;      // [2][kMaxLevels]: running maxima

  const std::int64_t H = g.heads, N = g.seq;
  const int D = static_cast<int>(g.head_dim);
  const int nv = D / V;         // vectors per row
  const int vec0 = lane * VPL;  // this lane's first vector
  const int lp = g.log2_pool;
  const int top = g.levels - 1;
  const int top_shift = top * lp;
  const std::int64_t c_top = std::int64_t{1} << top_shift;
  const std::int64_t n_top = g.size[top];
  const std::int64_t score_stride = g.pyramid_size - N;
  const float inv_c = ldexpf(1.0f, -top_shift);  // exact: c_L is a power of two

  for (std::int64_t gid = static_cast<std::int64_t>(blockIdx.x) * a.groups + grp;
       gid < a.total_groups; gid += static_cast<std::int64_t>(gridDim.x) * a.groups) {
    const std::int64_t h = gid % H;
    const std::int64_t rest = gid / H;
    const std::int64_t b = rest / a.spans;
    const std::int64_t t_begin = (rest % a.spans) * a.span;
    const std::int64_t bh = b * H + h;

    float sum[3][kChunk];  // running coarsest sums of this lane's chunk
#pragma unroll
    for (int x = 0; x < 3; ++x) {
#pragma unroll
      for (int e = 0; e < kChunk; ++e) sum[x][e] = 0.f;
    }

    for (std::int64_t c0 = t_begin; c0 < t_begin + a.span; c0 += kNormTokens) {
      // Tokens of this piece: kNormTokens, or the whole span when it is shorter.
      const int len = static_cast<int>(min(static_cast<std::int64_t>(kNormTokens), a.span));

      for (int u0 = 0; u0 < len; u0 += U) {
        // 1. Loads of U tokens' q, k and v chunks, all in flight together.
        uint4 raw[U][3][VPL];
#pragma unroll
        for (int u = 0; u < U; ++u) {
#pragma unroll
          for (int x = 0; x < 3; ++x) {
#pragma unroll
            for (int v = 0; v < VPL; ++v) {
              const int vec = vec0 + v;
              raw[u][x][v] = make_uint4(0, 0, 0, 0);  // +0.0 in every dtype
              if (x < a.tensors && u0 + u < len && vec < nv) {
                raw[u][x][v] = load16(token_ptr<T>(a.x[x], b, c0 + u0 + u, h, vec * V));
              }
            }
          }
        }

        // 2. Per token: this lane's float64 chunk sums of q and k squares (d order, from 0),
        // the coarsest sums, and the means when a coarsest block ends.
        double part[2 * U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const bool valid = u0 + u < len;
#pragma unroll
          for (int x = 0; x < 3; ++x) {
            float f[kChunk];
#pragma unroll
            for (int v = 0; v < VPL; ++v) unpack<T>(raw[u][x][v], f + v * V);
            if (x < 2) {
              double s = 0.0;
#pragma unroll
              for (int e = 0; e < kChunk; ++e) {
                const double d = f[e];
                s = fma(d, d, s);  // the product is exact: one rounding, as s + d * d
              }
              part[2 * u + x] = s;
            }
            if (valid) {
#pragma unroll
              for (int e = 0; e < kChunk; ++e) sum[x][e] += f[e];
            }
          }
          const std::int64_t t = c0 + u0 + u;
          if (valid && ((t + 1) & (c_top - 1)) == 0) {
            const std::int64_t entry = t >> top_shift;
#pragma unroll
            for (int x = 0; x < 3; ++x) {
#pragma unroll
              for (int v = 0; v < VPL; ++v) {
                float mean[V];
#pragma unroll
                for (int e = 0; e < V; ++e) mean[e] = sum[x][v * V + e] * inv_c;
                if (x < a.tensors && vec0 + v < nv) {
                  store16(static_cast<T*>(a.coarse[x]) + (bh * n_top + entry) * D + (vec0 + v) * V,
                          pack<T>(mean));
                }
              }
#pragma unroll
              for (int e = 0; e < kChunk; ++e) sum[x][e] = 0.f;
            }
          }
        }

        // 3. The row sums: a butterfly over the group's lanes, neighbours first (offset 1, 2,
        // ...). Addition is commutative, so every lane ends with the same bits; padding lanes
        // (beyond D) contribute +0.0, which changes nothing.
        for (int o = 1; o < M; o <<= 1) {
#pragma unroll
          for (int j = 0; j < 2 * U; ++j) part[j] += __shfl_xor_sync(mask, part[j], o);
        }

        // 4. Norms into shared memory: lane j takes value j (token j / 2, q or k), so the
        // square roots of one batch are computed side by side.
        for (int j = lane; j < 2 * U; j += M) {
          const int u = j >> 1, x = j & 1;
          if (u0 + u < len) {
            const float n = __double2float_rn(sqrt(pick(part, j)));
            norms[x * kNormTokens + u0 + u] = isnan(n) ? -INFINITY : n;  // as the CPU
          }
        }
      }
      __syncwarp(mask);

      // 4b. For the causal selection: the norm of every token m p of the piece (the first token
      // of a level-2 block). When len >= p the piece starts on a multiple of p (both are powers
      // of two and c0 advances by kNormTokens from a multiple of c_L); otherwise it holds at most
      // one such token, its first.
      if (a.first[0] || a.first[1]) {
        const int p = g.pool;
        const int count = len >= p ? len >> lp : ((c0 & (p - 1)) == 0 ? 1 : 0);
        for (int e = lane; e < 2 * count; e += M) {
          const int x = e >= count ? 1 : 0;
          const int idx = e - x * count;
          if (a.first[x]) {
            a.first[x][bh * (N >> lp) + (c0 >> lp) + idx] = norms[x * kNormTokens + (idx << lp)];
          }
        }
      }

      // 5. Pooled scores (max over the block's tokens) of the levels whose blocks fit in the
      // piece; len and every block size are powers of two.
      for (int l = 1; l <= top; ++l) {
        const int shift = l * lp;
        if ((std::int64_t{1} << shift) > len) break;
        const int c = 1 << shift;
        const int entries = len >> shift;
        for (int e = lane; e < 2 * entries; e += M) {
          const int x = e >= entries ? 1 : 0;
          const int idx = e - x * entries;
          const float* s = norms + x * kNormTokens + idx * c;
          float m = s[0];
          for (int j = 1; j < c; ++j) m = fmaxf(m, s[j]);
          if (a.score[x])
            a.score[x][bh * score_stride + (g.offset[l] - N) + (c0 >> shift) + idx] = m;
        }
      }
      // Levels whose blocks are longer than a piece (then len == kNormTokens): lane x folds the
      // piece's maximum into a running one, written when the block ends.
      if (c_top > kNormTokens) {
        for (int x = lane; x < 2; x += M) {
          const float* s = norms + x * kNormTokens;
          float m = s[0];
          for (int j = 1; j < kNormTokens; ++j) m = fmaxf(m, s[j]);
          for (int l = 1; l <= top; ++l) {
            const int shift = l * lp;
            const std::int64_t c = std::int64_t{1} << shift;
            if (c <= kNormTokens) continue;
            const bool first = (c0 & (c - 1)) == 0;
            const float r = first ? m : fmaxf(run[x * kMaxLevels + l], m);
            run[x * kMaxLevels + l] = r;
            if (((c0 + kNormTokens) & (c - 1)) == 0 && a.score[x]) {
              a.score[x][bh * score_stride + (g.offset[l] - N) + (c0 >> shift)] = r;
            }
          }
        }
      }
      __syncwarp(mask);  // the next piece overwrites the staged norms
    }
  }
}

// The dilated scorer's level 0 and pooling (pyramid_dilated.cpp). Plain kernels: the scorer's
// two attentions cost orders of magnitude more than these passes.

__device__ __forceinline__ float element(const float* p) {
  return *p;
}
__device__ __forceinline__ float element(const __nv_bfloat16* p) {
  return __bfloat162float(*p);
}
__device__ __forceinline__ float element(const __half* p) {
  return __half2float(*p);
}

constexpr int kMaxScoreChunks = 32;  // head_dim <= 256

// One thread per row (b, t, h), h fastest: the score of core/scores.hpp, read literally.
template <typename T>
__global__ void __launch_bounds__(256)
    token_scores_kernel(const Geometry g, const TokenTensor x, float* scores) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t H = g.heads, N = g.seq;
  if (row >= g.batch * N * H) return;
  const std::int64_t h = row % H, t = row / H % N, b = row / (H * N);
  const T* src = token_ptr<T>(x, b, t, h, 0);
  const int D = static_cast<int>(g.head_dim);
  const int chunks = (D + kChunk - 1) / kChunk;
  int width = 1;
  while (width < chunks) width *= 2;
  double partial[kMaxScoreChunks];
  for (int c = 0; c < width; ++c) {
    double sum = 0.0;
    for (int d = c * kChunk; d < min(D, (c + 1) * kChunk); ++d) {
      const double e = element(src + d);
      sum = fma(e, e, sum);  // the product is exact: one rounding, as sum + e * e
    }
    partial[c] = sum;
  }
  for (int step = 1; step < width; step *= 2) {
    for (int c = 0; c + step < width; c += 2 * step) partial[c] += partial[c + step];
  }
  const float n = __double2float_rn(sqrt(partial[0]));
  scores[(b * H + h) * N + t] = isnan(n) ? -INFINITY : n;
}

// One thread per (bh, entry i of level l >= 1): the max of its p children one level down (the
// tokens for l = 1). With `first`, level 1 also writes the score of its first token.
__global__ void __launch_bounds__(256)
    pool_level_kernel(const Geometry g, int l, const float* token_q, const float* token_k,
                      float* score_q, float* score_k, float* first_q, float* first_k) {
  const std::int64_t n = g.size[l];
  const std::int64_t w = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (w >= g.batch * g.heads * n) return;
  const std::int64_t bh = w / n, i = w % n;
  const std::int64_t N = g.seq, stride = g.pyramid_size - N;
  const int p = g.pool;
  const float* tokens[2] = {token_q, token_k};
  float* score[2] = {score_q, score_k};
  float* first[2] = {first_q, first_k};
#pragma unroll
  for (int x = 0; x < 2; ++x) {
    const float* child =
        l == 1 ? tokens[x] + bh * N : score[x] + bh * stride + (g.offset[l - 1] - N);
    float m = child[i * p];
    for (int j = 1; j < p; ++j) m = fmaxf(m, child[i * p + j]);
    score[x][bh * stride + (g.offset[l] - N) + i] = m;
    if (l == 1 && first[x]) first[x][bh * (N / p) + i] = child[i * p];
  }
}

}  // namespace

void launch_token_scores(const Geometry& g, DType dtype, const TokenTensor& x, float* scores,
                         cudaStream_t stream) {
  if (g.head_dim > kMaxScoreChunks * kChunk) {
    throw Error("launch_token_scores: head_dim " + std::to_string(g.head_dim) + " above " +
                std::to_string(kMaxScoreChunks * kChunk));
  }
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t rows = g.batch * g.seq * g.heads;
    const std::int64_t blocks = (rows + 255) / 256;
    token_scores_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(g, x, scores);
    CUDA_CHECK_LAUNCH("token_scores_kernel");
  });
}

void launch_pool_scores(const Geometry& g, const float* token_q, const float* token_k,
                        float* score_q, float* score_k, float* first_q, float* first_k,
                        cudaStream_t stream) {
  for (int l = 1; l < g.levels; ++l) {  // in order: level l reads level l - 1
    const std::int64_t work = g.batch * g.heads * g.size[l];
    const std::int64_t blocks = (work + 255) / 256;
    pool_level_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
        g, l, token_q, token_k, score_q, score_k, g.causal ? first_q : nullptr,
        g.causal ? first_k : nullptr);
    CUDA_CHECK_LAUNCH("pool_level_kernel");
  }
}

namespace {

// out[r, j] = max_i in[r * group + i, j]: the query score of a KV group.
__global__ void __launch_bounds__(256)
    group_max_kernel(const float* in, float* out, std::int64_t rows, std::int64_t group,
                     std::int64_t count) {
  const std::int64_t w = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (w >= rows * count) return;
  const std::int64_t r = w / count, j = w % count;
  float m = in[(r * group) * count + j];
  for (std::int64_t i = 1; i < group; ++i) m = fmaxf(m, in[(r * group + i) * count + j]);
  out[w] = m;
}

}  // namespace

void launch_group_max(const float* in, float* out, std::int64_t rows, std::int64_t group,
                      std::int64_t count, cudaStream_t stream) {
  const std::int64_t blocks = (rows * count + 255) / 256;
  if (blocks == 0) return;
  group_max_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(in, out, rows, group, count);
  CUDA_CHECK_LAUNCH("group_max_kernel");
}

void launch_pyramid(const Geometry& g, DType dtype, const TokenTensor& q, const TokenTensor& k,
                    const TokenTensor& v, float* score_q, float* score_k, float* first_q,
                    float* first_k, void* coarse_q, void* coarse_k, void* coarse_v,
                    cudaStream_t stream) {
  if (g.levels < 2) return;  // dense: no scores
  if (g.group == 1) {
    const TokenTensor x[3] = {q, k, v};
    float* const score[2] = {score_q, score_k};
    float* const first[2] = {first_q, first_k};
    void* const coarse[3] = {coarse_q, coarse_k, coarse_v};
    launch_pyramid_pass(g, dtype, 3, x, score, first, coarse, stream);
    return;
  }
  // Grouped-query attention. Query heads: their scores per head into pool memory, then the
  // group's max (a max of maxima: pooling commutes with it) into score_q and first_q.
  const Geometry kv = kv_geometry(g);
  const std::int64_t score_count = g.pyramid_size - g.seq;
  const std::int64_t first_count = g.causal ? g.seq / g.pool : 0;
  float* per_head = nullptr;
  const std::size_t per_head_floats =
      static_cast<std::size_t>(g.batch * g.heads * (score_count + first_count));
  CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&per_head), per_head_floats * sizeof(float),
                             stream));
  float* const head_first = g.causal ? per_head + g.batch * g.heads * score_count : nullptr;
  {
    const TokenTensor x[1] = {q};
    float* const score[2] = {per_head, nullptr};
    float* const first[2] = {head_first, nullptr};
    void* const coarse[1] = {coarse_q};
    launch_pyramid_pass(g, dtype, 1, x, score, first, coarse, stream);
  }
  launch_group_max(per_head, score_q, kv.batch * kv.heads, g.group, score_count, stream);
  if (g.causal)
    launch_group_max(head_first, first_q, kv.batch * kv.heads, g.group, first_count, stream);
  CUDA_CHECK(cudaFreeAsync(per_head, stream));
  // KV heads: k's scores, k's and v's coarsest means.
  const TokenTensor x[2] = {k, v};
  float* const score[2] = {score_k, nullptr};
  float* const first[2] = {first_k, nullptr};
  void* const coarse[2] = {coarse_k, coarse_v};
  launch_pyramid_pass(kv, dtype, 2, x, score, first, coarse, stream);
}

void launch_pyramid_pass(const Geometry& g, DType dtype, int count, const TokenTensor* x,
                         float* const score[2], float* const first[2], void* const* coarse,
                         cudaStream_t stream) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr int U = kVec<T> == kChunk ? 4 : 2;  // 12 loads of 16 bytes in flight per lane
    const auto kernel = pyramid_kernel<T, U>;
    const int chunks = static_cast<int>((g.head_dim + kChunk - 1) / kChunk);
    int lanes = 1;
    while (lanes < chunks) lanes *= 2;
    if (lanes > 32) throw Error("launch_pyramid: head_dim too large for the pyramid kernel");

    PyramidArgs a{};
    a.g = g;
    a.tensors = count;
    for (int i = 0; i < count; ++i) {
      a.x[i] = x[i];
      a.coarse[i] = coarse[i];
    }
    for (int i = 0; i < 2; ++i) {
      a.score[i] = i < count ? score[i] : nullptr;
      a.first[i] = g.causal && i < count ? first[i] : nullptr;
    }
    a.lanes = lanes;
    a.groups = std::min(kMaxGroups, kThreads / lanes);
    // A span is at least 16 tokens where N allows, so that short coarsest blocks do not make
    // every group's prologue dominate.
    const std::int64_t c_top = std::int64_t{1} << ((g.levels - 1) * g.log2_pool);
    a.span = c_top;
    while (a.span < 16 && g.seq % (2 * a.span) == 0) a.span *= 2;
    a.spans = g.seq / a.span;
    a.total_groups = g.batch * g.heads * a.spans;

    const int threads = a.groups * lanes;
    const std::size_t smem = static_cast<std::size_t>(a.groups) * kGroupFloats * sizeof(float);
    const std::int64_t wanted = (a.total_groups + a.groups - 1) / a.groups;
    const std::int64_t blocks = std::min(wanted, resident_blocks(kernel, threads, smem));
    kernel<<<static_cast<unsigned>(blocks), threads, smem, stream>>>(a);
    CUDA_CHECK_LAUNCH("pyramid_kernel");
  });
}

}  // namespace lighthouse::cuda
