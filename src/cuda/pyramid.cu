// Stage 1 on the GPU: the scores of every pyramid level above the tokens and the means of the
// coarsest level, in one pass over q, k and v.
//
// One block owns a span of tokens of one (batch, head): max(R, c_L) tokens, staged R rows at a
// time into shared memory with coalesced 16-byte loads (R = 16 KiB of rows per tensor). From
// the staged rows:
//   - the token norms, one thread per row: sqrt of a float64 sum of squares in d order,
//     rounded once to float. The CPU backend uses the same definition, so the selection sees
//     identical scores on both;
//   - the max-pooled scores of levels 2..L (levels whose blocks are longer than R keep a
//     running max across the span's iterations);
//   - the coarsest level's means (fp32 sums in token order, rounded once), which the gather
//     copies instead of reading all N tokens a second time.
// Everything else the gather needs (the selected finer blocks) is a small fraction of the
// tokens. Blocks are numbered with the head fastest, so neighbouring blocks read neighbouring
// heads of the same tokens: whole [H, D] rows of a token-major layout.
#include <cfloat>

#include "cuda/check.hpp"
#include "cuda/stages.hpp"
#include "cuda/vec.cuh"

namespace lighthouse::cuda {

namespace {

constexpr int kThreads = 256;

struct PyramidArgs {
  Geometry g;
  TokenTensor x[3];    // q, k, v
  float* score[2];     // q, k: [BH, P - N]
  void* coarse[3];     // [BH, n_L, D]
  int rows;            // R: rows staged per iteration, a power of two
  std::int64_t span;   // tokens per block: max(R, c_L)
  std::int64_t spans;  // blocks per (batch, head)
};

template <typename T>
__global__ void __launch_bounds__(kThreads, 4) pyramid_kernel(const PyramidArgs a) {
  constexpr int V = kVec<T>;
  extern __shared__ uint4 smem[];
  __shared__ float s_run[2][kMaxLevels];  // running maxima of levels longer than R

  const Geometry& g = a.g;
  const int D = static_cast<int>(g.head_dim);
  const int nv = D / V;
  const int stride4 = nv + 1;  // one 16-byte pad per row: the norm threads read down a column
  const int R = a.rows;
  uint4* tile = smem;                                                 // [3][R][stride4]
  float* s_score = reinterpret_cast<float*>(smem + 3 * R * stride4);  // [2][R], then sums

  const std::int64_t H = g.heads, N = g.seq;
  const std::int64_t blk = blockIdx.x;
  const std::int64_t h = blk % H;
  const std::int64_t rest = blk / H;
  const std::int64_t b = rest / a.spans;
  const std::int64_t t0 = (rest % a.spans) * a.span;
  const std::int64_t t_end = min(t0 + a.span, N);
  const std::int64_t bh = b * H + h;
  const int top = g.levels - 1;
  const int top_shift = top * g.log2_pool;
  const std::int64_t c_top = std::int64_t{1} << top_shift;
  const std::int64_t n_top = g.size[top];
  const std::int64_t score_stride = g.pyramid_size - N;
  const int tid = threadIdx.x;
  const int col = tid % nv;  // this thread's 16-byte column when staging rows
  const int row_sub = tid / nv;
  const int rows_per_pass = kThreads / nv;

  // When a coarsest block is longer than R the block is that one entry, summed across
  // iterations: thread (kThreads - 1 - o) owns output o = (tensor, vector), its running sum in
  // shared memory (registers are the scarce resource here).
  const bool multi = c_top > R;
  const int own = kThreads - 1 - tid;
  float* acc = s_score + 2 * R + (multi && own < 3 * nv ? own * V : 0);  // [3 nv][V]
  if (multi && own < 3 * nv) {
#pragma unroll
    for (int e = 0; e < V; ++e) acc[e] = 0.f;
  }

  for (std::int64_t row0 = t0; row0 < t_end; row0 += R) {
    const int nrows = static_cast<int>(t_end - row0 < R ? t_end - row0 : R);

    // 1. Stage q, k, v rows: thread (row_sub, col) loads rows row_sub, row_sub + rows_per_pass,
    // ...; two rows of each tensor (six 16-byte loads) in flight per thread.
    if (row_sub < rows_per_pass) {
      for (int r0 = row_sub; r0 < nrows; r0 += 2 * rows_per_pass) {
        uint4 buf[3][2];
#pragma unroll
        for (int x = 0; x < 3; ++x) {
#pragma unroll
          for (int u = 0; u < 2; ++u) {
            const int r = r0 + u * rows_per_pass;
            if (r < nrows) buf[x][u] = load16(token_ptr<T>(a.x[x], b, row0 + r, h, col * V));
          }
        }
#pragma unroll
        for (int x = 0; x < 3; ++x) {
#pragma unroll
          for (int u = 0; u < 2; ++u) {
            const int r = r0 + u * rows_per_pass;
            if (r < nrows) tile[(x * R + r) * stride4 + col] = buf[x][u];
          }
        }
      }
    }
    __syncthreads();

    // 2a. Token norms of q and k: one thread per row, sequential float64 sum in d order.
    if (tid < 2 * R) {
      const int x = tid / R;
      const int r = tid % R;
      if (r < nrows) {
        const uint4* row = tile + (x * R + r) * stride4;
        double sum = 0.0;
        for (int vec = 0; vec < nv; ++vec) {
          float f[V];
          unpack<T>(row[vec], f);
#pragma unroll
          for (int e = 0; e < V; ++e) {
            const double d = f[e];
            sum += d * d;  // exact product: a fused multiply-add rounds the same way
          }
        }
        s_score[x * R + r] = __double2float_rn(sqrt(sum));
      }
    }

    // 2b. Coarsest means, by the high threads first (the low ones are busy with norms).
    if (!multi) {
      const int groups = nrows >> top_shift;  // nrows is a multiple of c_top
      const int per_x = groups * nv;
      const float inv_c = 1.0f / static_cast<float>(c_top);
      for (int o = own; o < 3 * per_x; o += kThreads) {
        const int x = o / per_x;
        const int rem = o - x * per_x;
        const int grp = rem / nv;
        const int vec = rem - grp * nv;
        float s[V];
#pragma unroll
        for (int e = 0; e < V; ++e) s[e] = 0.f;
        for (int r = grp * static_cast<int>(c_top); r < (grp + 1) * static_cast<int>(c_top); ++r) {
          float f[V];
          unpack<T>(tile[(x * R + r) * stride4 + vec], f);
#pragma unroll
          for (int e = 0; e < V; ++e) s[e] += f[e];
        }
#pragma unroll
        for (int e = 0; e < V; ++e) s[e] *= inv_c;
        const std::int64_t entry = (row0 >> top_shift) + grp;
        store16(static_cast<T*>(a.coarse[x]) + (bh * n_top + entry) * D + vec * V, pack<T>(s));
      }
    } else if (own < 3 * nv) {
      const int x = own / nv;
      const int vec = own - x * nv;
      float sum[V];
#pragma unroll
      for (int e = 0; e < V; ++e) sum[e] = acc[e];
      for (int r = 0; r < nrows; ++r) {
        float f[V];
        unpack<T>(tile[(x * R + r) * stride4 + vec], f);
#pragma unroll
        for (int e = 0; e < V; ++e) sum[e] += f[e];
      }
#pragma unroll
      for (int e = 0; e < V; ++e) acc[e] = sum[e];
    }
    __syncthreads();

    // 3. Pooled scores (max over the block's tokens) of levels 2..L whose blocks fit in R rows.
    for (int l = 1; l <= top; ++l) {
      const int shift = l * g.log2_pool;
      const int c = 1 << shift;
      if (c > R) break;
      const int entries = nrows >> shift;
      for (int e = tid; e < 2 * entries; e += kThreads) {
        const int x = e / entries;
        const int idx = e - x * entries;
        const float* s = s_score + x * R + idx * c;
        float m = s[0];
        for (int j = 1; j < c; ++j) m = fmaxf(m, s[j]);
        a.score[x][bh * score_stride + (g.offset[l] - N) + (row0 >> shift) + idx] = m;
      }
    }
    // Levels whose blocks are longer than R: warp 0 (q) and warp 1 (k) fold this iteration's
    // maximum into a running one, written when the block ends.
    if (multi && tid < 64) {
      const int x = tid >> 5;
      const int lane = tid & 31;
      float m = -FLT_MAX;
      for (int r = lane; r < nrows; r += 32) m = fmaxf(m, s_score[x * R + r]);
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
      if (lane == 0) {
        for (int l = 1; l <= top; ++l) {
          const int shift = l * g.log2_pool;
          const std::int64_t c = std::int64_t{1} << shift;
          if (c <= R) continue;
          const bool first = (row0 & (c - 1)) == 0;
          const float run = first ? m : fmaxf(s_run[x][l], m);
          s_run[x][l] = run;
          if (((row0 + R) & (c - 1)) == 0) {
            a.score[x][bh * score_stride + (g.offset[l] - N) + (row0 >> shift)] = run;
          }
        }
      }
    }
    __syncthreads();  // the next iteration overwrites the staged rows and norms
  }

  if (multi && own < 3 * nv) {
    const int x = own / nv;
    const int vec = own - x * nv;
    const float inv_c = 1.0f / static_cast<float>(c_top);
    float mean[V];
#pragma unroll
    for (int e = 0; e < V; ++e) mean[e] = acc[e] * inv_c;
    store16(static_cast<T*>(a.coarse[x]) + (bh * n_top + (t0 >> top_shift)) * D + vec * V,
            pack<T>(mean));
  }
}

}  // namespace

void launch_pyramid(const Geometry& g, DType dtype, const TokenTensor& q, const TokenTensor& k,
                    const TokenTensor& v, float* score_q, float* score_k, void* coarse_q,
                    void* coarse_k, void* coarse_v, cudaStream_t stream) {
  if (g.levels < 2) return;  // dense: no scores, the gather copies tokens
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const int nv = static_cast<int>(g.head_dim) / kVec<T>;
    const int row_bytes = static_cast<int>(g.head_dim * sizeof(T));
    int rows = 128;  // 2 * rows <= kThreads norm threads
    while (rows > 16 && rows * row_bytes > 16384) rows /= 2;
    if (3 * nv > kThreads) throw Error("launch_pyramid: head_dim too large for the pyramid kernel");

    PyramidArgs a{};
    a.g = g;
    a.x[0] = q;
    a.x[1] = k;
    a.x[2] = v;
    a.score[0] = score_q;
    a.score[1] = score_k;
    a.coarse[0] = coarse_q;
    a.coarse[1] = coarse_k;
    a.coarse[2] = coarse_v;
    a.rows = rows;
    const std::int64_t c_top = std::int64_t{1} << ((g.levels - 1) * g.log2_pool);
    a.span = std::max<std::int64_t>(rows, c_top);
    a.spans = (g.seq + a.span - 1) / a.span;
    const std::int64_t blocks = g.batch * g.heads * a.spans;
    if (blocks > 0x7fffffff) throw Error("launch_pyramid: too many blocks");

    const std::size_t smem = static_cast<std::size_t>(3 * rows * (nv + 1)) * 16 +
                             (2 * rows + 3 * nv * kVec<T>)*sizeof(float);
    CUDA_CHECK(cudaFuncSetAttribute(pyramid_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(smem)));
    pyramid_kernel<T><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(a);
    CUDA_CHECK_LAUNCH("pyramid_kernel");
  });
}

}  // namespace lighthouse::cuda
