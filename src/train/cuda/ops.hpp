// The CUDA model's kernels, one file per op (forward and backward side by side), as launchers
// callable from host C++. Every launcher queues its work on `stream` and checks the launch.
//
// Conventions (those of train/layers.hpp, on the device):
//  - Row-major [rows, features] buffers, rows = batch * seq tokens.
//  - `act` is the activation dtype: kBFloat16 (bf16 storage, fp32 arithmetic in registers) or
//    kFloat32. The residual stream, the normalisation statistics, the parameters and their
//    gradients are always fp32.
//  - Feature counts (dim, hidden) are multiples of 4: rows move as 4-element vectors.
//  - Every kernel is deterministic: no atomics; sums run in a fixed order that depends on the
//    shape only.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "lighthouse/tensor.hpp"

namespace lighthouse::train::cuda {

// ---- embedding.cu ------------------------------------------------------------------------------
// x[r, :] = table[tokens[r], :] (fp32 table and residual stream).
void embedding_forward(const std::int32_t* tokens, const float* table, float* x, std::int64_t rows,
                       std::int64_t dim, cudaStream_t stream);
// out[r, v] = (tokens[r] == v) in `dtype`, for v in [0, width). The embedding's backward is the
// product one_hot^T * dx on cuBLASLt: a deterministic sum over the rows of each token, without
// atomics, at tensor-core speed.
void one_hot(const std::int32_t* tokens, void* out, DType dtype, std::int64_t rows,
             std::int64_t width, cudaStream_t stream);

// ---- rmsnorm.cu --------------------------------------------------------------------------------
// The largest dim the RMSNorm kernels take (8 vectors of 4 per thread, 256 threads).
inline constexpr std::int64_t kMaxNormDim = 8192;
// y = x / sqrt(mean(x^2) + eps) * gain, statistics in fp32; inv_rms[r] kept for the backward.
void rmsnorm_forward(const float* x, const float* gain, void* y, DType act, float* inv_rms,
                     std::int64_t rows, std::int64_t dim, float eps, cudaStream_t stream);
// Floats of the per-block dgain partial sums rmsnorm_backward needs for this shape.
std::size_t rmsnorm_backward_scratch(std::int64_t rows, std::int64_t dim);
// dx += d/dx (fp32), and when dx_act is not null also writes the updated dx in `act` (the bf16
// copy the next products read). dgain += d/dgain: per-block partials in `scratch`, then summed
// over blocks in block order.
void rmsnorm_backward(const float* x, const float* gain, const float* inv_rms, const float* dy,
                      float* dx, void* dx_act, DType act, float* dgain, float* scratch,
                      std::int64_t rows, std::int64_t dim, cudaStream_t stream);

// ---- rotary.cu ---------------------------------------------------------------------------------
// Rotates q and k in place inside the fused [rows, 3 * heads * head_dim] qkv buffer ("rotate
// half": pairs (i, i + D/2)), token r at position r % seq, with the fp32 tables cos/sin
// [seq, D/2] of rotary_tables(). inverse = true applies the transposed rotation (the backward).
void rotary_qk(void* qkv, DType act, std::int64_t rows, std::int64_t seq, std::int64_t heads,
               std::int64_t head_dim, const float* cos, const float* sin, bool inverse,
               cudaStream_t stream);

// ---- swiglu.cu ---------------------------------------------------------------------------------
// hg is [rows, 2 * hidden] (h, then g, per row); a = silu(h) * g.
void swiglu_forward(const void* hg, void* a, DType act, std::int64_t rows, std::int64_t hidden,
                    cudaStream_t stream);
// dhg (overwritten) from da.
void swiglu_backward(const void* hg, const void* da, void* dhg, DType act, std::int64_t rows,
                     std::int64_t hidden, cudaStream_t stream);

// ---- cross_entropy.cu --------------------------------------------------------------------------
// One chunk of rows of the LM head's fp32 logits, [rows, ld] with `vocab` <= ld real columns
// (the rest is the padding of the vocabulary to a multiple of 8 for the products).
// loss[r] = -log softmax(logits[r])[targets[r]] (0 where the target is negative) and
// lse[r] = log sum exp(logits[r]), in fp32.
void cross_entropy_forward(const float* logits, std::int64_t ld, const std::int32_t* targets,
                           std::int64_t rows, std::int64_t vocab, float* loss, float* lse,
                           cudaStream_t stream);
// dlogits = grad_scale * (softmax - one_hot(target)) in `dtype` with the same ld, from the
// logits recomputed in the backward and the forward's lse; 0 in the padding columns and on
// ignored rows. dlogits may alias logits when dtype is float32.
void cross_entropy_backward(const float* logits, std::int64_t ld, const float* lse,
                            const std::int32_t* targets, std::int64_t rows, std::int64_t vocab,
                            float grad_scale, void* dlogits, DType dtype, cudaStream_t stream);

// ---- adamw.cu ----------------------------------------------------------------------------------
// The optimizer works on the model's parameter arenas: every parameter's values, gradients and
// moments at the same offset of four fp32 arenas, each parameter starting at a multiple of
// kAdamWChunk elements, so that a chunk (one block of the kernels) belongs to one parameter.
// Gaps and padding hold zeros in every arena, which the update keeps at zero.
inline constexpr std::int64_t kAdamWChunk = 4096;
// Doubles of scratch grad_sum_squares needs for an arena of n elements.
std::size_t grad_sum_squares_scratch(std::int64_t n);
// *out = sum of grad[i]^2 in double: per-chunk sums, then the chunks' in chunk order.
void grad_sum_squares(const float* grad, std::int64_t n, double* scratch, double* out,
                      cudaStream_t stream);
struct AdamWStep {
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  double c1 = 1, c2 = 1;    // bias corrections 1 - beta^t
  float grad_scale = 1.0f;  // the clipping factor (1 when not clipping)
};
// One AdamW update with the formulas and rounding of train/optimizer.cpp (double arithmetic,
// no contractions): value, m, v updated in place; copy (bf16, may be null) gets the new values.
// decay[c] says whether chunk c's parameter is decayed.
void adamw_update(float* value, const float* grad, float* m, float* v, void* copy,
                  const std::uint8_t* decay, std::int64_t n, const AdamWStep& step,
                  cudaStream_t stream);

// ---- elementwise.cu ----------------------------------------------------------------------------
// dst[i] = bf16(src[i]) (round to nearest even).
void cast_to_bf16(const float* src, void* dst, std::int64_t n, cudaStream_t stream);
// dst[i, :] = src[rows[i], :] for `count` rows of `width` elements of `dtype`; src has leading
// dimension ld.
void gather_rows(const void* src, std::int64_t ld, const std::int64_t* rows, std::int64_t count,
                 std::int64_t width, void* dst, DType dtype, cudaStream_t stream);

}  // namespace lighthouse::train::cuda
