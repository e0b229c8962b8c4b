// The attention on the CPU: dense causal attention over the gathered rows, forward and backward,
// the only heavy stage of Lighthouse. Flash-style: key/value blocks stream past a block of queries
// with an online softmax, so no S x S buffer ever exists; each thread owns a few block-sized
// scratch buffers. Block products run on gemm() (OpenBLAS when available), the softmax on
// fast_exp2().
//
// Determinism: every output element is produced by one fixed sequence of operations that does not
// depend on the thread count or the schedule, so results are bitwise identical for any `threads`
// and across runs (for one build).
#pragma once

#include <cstdint>
#include <span>

namespace lighthouse::cpu {

// One (batch, head) problem. Rows are [S, D] with row stride `ld` elements (ld >= D); only the
// first D elements of each row are read or written, so heads may interleave within rows.
template <typename T>
struct AttentionHead {
  const T* q;
  const T* k;
  const T* v;
  T* o;    // forward output [S, ld]
  T* lse;  // forward output [S]: natural-log log-sum-exp of the scaled, masked logits per row
};

template <typename T>
struct AttentionGradHead {
  const T* q;
  const T* k;
  const T* v;
  const T* o;
  const T* lse;
  const T* dout;  // [S, ld]
  T* dq;          // outputs [S, ld], overwritten
  T* dk;
  T* dv;
};

// Causal: row s attends to rows 0..s. T is float or double. `threads` <= 0 means all
// (omp_get_max_threads()). Throws InvalidArgument for S < 0, D < 1, ld < D or a null pointer.
template <typename T>
void causal_attention_forward(std::span<const AttentionHead<T>> heads, std::int64_t S,
                              std::int64_t D, std::int64_t ld, T scale, int threads);
template <typename T>
void causal_attention_backward(std::span<const AttentionGradHead<T>> heads, std::int64_t S,
                               std::int64_t D, std::int64_t ld, T scale, int threads);

// Block sizes (rows of queries and keys per block product). The defaults (256, 256, 256) were
// chosen by measurement (see kDefaultTiles in the .cpp);
// the overloads below exist for that benchmark and the tests. Results depend on the tiles (the
// order of additions does), never on the thread count.
struct AttentionTiles {
  std::int64_t forward_q = 0;  // 0: default
  std::int64_t forward_k = 0;  // 0: default
  std::int64_t backward = 0;   // square tiles of the backward; 0: default
};

template <typename T>
void causal_attention_forward(std::span<const AttentionHead<T>> heads, std::int64_t S,
                              std::int64_t D, std::int64_t ld, T scale, int threads,
                              AttentionTiles tiles);
template <typename T>
void causal_attention_backward(std::span<const AttentionGradHead<T>> heads, std::int64_t S,
                               std::int64_t D, std::int64_t ld, T scale, int threads,
                               AttentionTiles tiles);

}  // namespace lighthouse::cpu
