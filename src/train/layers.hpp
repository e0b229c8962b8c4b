// The model's parameter-light layers, forward and backward side by side, on contiguous row-major
// buffers of `rows` = batch * seq token rows. Templated on the scalar type: the model trains in
// float32, the gradient checks run in float64.
//
// Conventions: forward functions overwrite their outputs. Backward functions ADD parameter
// gradients into the given accumulators (gradient accumulation over micro-batches) and, as
// documented per function, either overwrite or add the input gradient (adding is what a
// residual branch wants).
#pragma once

#include <cstdint>

namespace lighthouse::train {

// ---- token embedding (embedding.cpp) -----------------------------------------------------------
// y[r, :] = table[tokens[r], :]; table is [vocab, dim].
template <typename T>
void embedding_forward(const std::int32_t* tokens, const T* table, T* y, std::int64_t rows,
                       std::int64_t dim);
// dtable[tokens[r], :] += dy[r, :].
template <typename T>
void embedding_backward(const std::int32_t* tokens, const T* dy, T* dtable, std::int64_t rows,
                        std::int64_t dim);

// ---- RMSNorm (rmsnorm.cpp)
// ----------------------------------------------------------------------- y = x / sqrt(mean(x^2) +
// eps) * gain; inv_rms[r] (one per row) is kept for the backward pass.
template <typename T>
void rmsnorm_forward(const T* x, const T* gain, T* y, T* inv_rms, std::int64_t rows,
                     std::int64_t dim, T eps);
// dx += d/dx, dgain += d/dgain.
template <typename T>
void rmsnorm_backward(const T* x, const T* gain, const T* inv_rms, const T* dy, T* dx, T* dgain,
                      std::int64_t rows, std::int64_t dim);

// ---- rotary position embedding (rotary.cpp)
// ------------------------------------------------------ Angles for positions [0, seq) and the
// head_dim/2 frequency pairs: theta_i = base^(-2i/D). cos and sin are [seq, head_dim / 2].
template <typename T>
void rotary_tables(std::int64_t seq, std::int64_t head_dim, double base, T* cos, T* sin);
// Rotates, in place, every head of x viewed as [batch, seq, heads, head_dim] with a row stride of
// `row_stride` elements between consecutive tokens (so q and k inside a fused qkv buffer can be
// rotated where they lie). Pairs are (i, i + D/2) ("rotate half", as Llama). inverse = true
// applies the transposed rotation, which is the backward pass (the map is orthogonal and linear).
template <typename T>
void rotary_apply(T* x, std::int64_t batch, std::int64_t seq, std::int64_t heads,
                  std::int64_t head_dim, std::int64_t row_stride, const T* cos, const T* sin,
                  bool inverse);

// ---- SwiGLU gate (swiglu.cpp)
// -------------------------------------------------------------------- hg is [rows, 2 * hidden]:
// per row the first half is h, the second g; a = silu(h) * g.
template <typename T>
void swiglu_forward(const T* hg, T* a, std::int64_t rows, std::int64_t hidden);
// dhg (overwritten) from da.
template <typename T>
void swiglu_backward(const T* hg, const T* da, T* dhg, std::int64_t rows, std::int64_t hidden);

// ---- softmax cross-entropy (cross_entropy.cpp)
// --------------------------------------------------- Mean over rows of -log
// softmax(logits[r])[targets[r]], accumulated in double. Rows whose target is negative are ignored
// (not counted in the mean). Also writes, when dlogits is non-null, scale * d(mean loss)/d(logits)
// (overwritten; it may alias logits). Context parallelism: `counted` >= 0 is the mean's count
// (the whole batch's, of which these rows are a part; -1: count these rows' targets), and
// `row_losses` (non-null) receives every row's loss (0 where ignored), whose sum in whole-batch
// row order over `counted` is what this returns for a whole batch.
template <typename T>
double cross_entropy(const T* logits, const std::int32_t* targets, std::int64_t rows,
                     std::int64_t vocab, T* dlogits, double scale, std::int64_t counted = -1,
                     double* row_losses = nullptr);
// -log softmax(logits)[target] of one row, in double (the evaluations' per-token losses).
double token_loss(const float* logits, std::int64_t vocab, std::int32_t target);

}  // namespace lighthouse::train
