// What a CUDA forward keeps for its backward (ContextState).
//
// CudaState: one allocation in context_layout() (indices, position map, gathered q/k/v/o, softmax
// statistics) from the device's stream-ordered pool (cudaMallocAsync on the forward's stream,
// cudaFreeAsync on the same stream when the context dies; the pool keeps freed memory for
// reuse, so a training loop does not call the driver each step). That stream must outlive the
// context. Or the same parts in a caller's buffer (ContextBuffer), whose lifetime the caller
// orders against the streams.
//
// DenseState (levels == 1): cuDNN runs directly on the caller's [B, N, H, D] views, so the
// context keeps those views (which must stay alive and unchanged until backward) and the softmax
// statistics instead of copies.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>

#include "core/backend.hpp"
#include "cuda/buffer_reuse.hpp"

namespace lighthouse::cuda {

class CudaState final : public ContextState {
 public:
  // In context_layout(plan, dtype): its own stream-ordered allocation, or `external`, caller
  // memory of context_bytes(plan, dtype) bytes (a ContextBuffer) that it neither owns nor frees.
  CudaState(const Plan& plan, DType dtype, cudaStream_t stream, void* external = nullptr);
  CudaState(const CudaState&) = delete;
  CudaState& operator=(const CudaState&) = delete;
  ~CudaState() override;

  void copy_indices(std::int32_t* host_dst) const override;

  DType dtype() const { return dtype_; }
  cudaStream_t stream() const { return stream_; }
  // The bytes of the context (no caller buffer used as scratch may touch them).
  const ByteSpan& span() const { return span_; }

  std::int32_t* indices = nullptr;   // [BHkv, S]
  std::int32_t* position = nullptr;  // [BHkv, P]
  float* stats = nullptr;            // [BH, S]
  std::array<void*, 4> sel{};        // gathered q, k, v and the attention output, [BH, S, D]
                                     // (k, v: [BHkv, S, D])

 private:
  DType dtype_;
  cudaStream_t stream_;
  void* base_ = nullptr;  // owned allocation; null for caller memory
  std::size_t index_count_ = 0;
  ByteSpan span_;
};

// The dense context: the caller's q, k, v and out (views, not copies: they must stay alive and
// unchanged until backward) and the softmax statistics, [B, H, N] float.
class DenseState final : public ContextState {
 public:
  DenseState(const Plan& plan, DType dtype, const TensorView& q, const TensorView& k,
             const TensorView& v, const TensorView& out, cudaStream_t stream);
  DenseState(const DenseState&) = delete;
  DenseState& operator=(const DenseState&) = delete;
  ~DenseState() override;

  // Every token is its own entry, in order: 0..N-1 for each (batch, head).
  void copy_indices(std::int32_t* host_dst) const override;

  DType dtype() const { return dtype_; }
  cudaStream_t stream() const { return stream_; }

  TensorView q, k, v, out;
  float* stats = nullptr;  // [B, H, N]

 private:
  DType dtype_;
  cudaStream_t stream_;
  Plan plan_;
};

// `waiter` does not run past this point before `producer`'s work queued so far is done. A
// backward on another stream than its context's waits for the forward's work, and the context's
// stream (where its memory is freed) then waits for the backward's reads.
void stream_wait(cudaStream_t waiter, cudaStream_t producer);

}  // namespace lighthouse::cuda
