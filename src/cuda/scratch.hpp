// Where one call's scratch lives. The forward's (pooled scores and coarsest means, dead once the
// gather has run) and the backward's (the four gathered gradient blocks) borrow the caller's
// output buffers, which are written only after the scratch is dead, when buffer_reuse.hpp finds
// them contiguous, large enough and sharing no byte with what the call reads; otherwise the
// per-stream workspace holds them. So the backward's peak is the context (4 S-row blocks) +
// cuDNN's workspace (~2 blocks) + at most 1 block, not 4 more. Every placement gives the same
// bits: the kernels and their sums are the same, only the addresses differ.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>

#include "cuda/buffer_reuse.hpp"
#include "cuda/stages.hpp"
#include "cuda/workspace.hpp"

namespace lighthouse::cuda {

// The forward's scratch (the pooled scores, the first-token scores of the causal selection and
// the coarsest means, all dead once the gather has run): in `out` (the scatter writes it last) when
// out_holds_scratch() allows, else in the workspace, which then does not grow to the coarsest
// level's size (0.75 N rows at p = 2) for nothing.
struct ForwardScratch {
  float* score_q = nullptr;       // [BH, P - N] pooled scores of levels 2..L
  float* score_k = nullptr;       //
  float* first_q = nullptr;       // [BH, N / p] first-token norms (causal selection only; else
  float* first_k = nullptr;       // null)
  std::array<void*, 3> coarse{};  // the coarsest means of q, k and v, [BH, n_L, D] (L >= 2)
};
ForwardScratch forward_scratch(const Geometry& g, DType dtype, const TensorView& q,
                               const TensorView& k, const TensorView& v, const TensorView& out,
                               const ByteSpan& context, Workspace& workspace, cudaStream_t stream);

// The backward's gathered gradients, [BH, S, D] blocks: do_sel (written by the scatter backward,
// read by the attention backward) and dq_sel, dk_sel, dv_sel (written by the attention backward,
// read by the gather backward), where choose_gradient_scratch() puts them: in the caller's dq,
// dk and dv when they can hold them (the attention backward then needs at most one block of
// workspace instead of four), else in the workspace (always with grouped-query attention, whose
// dk_sel and dv_sel are [BHkv, S, D]).
class GradientRows {
 public:
  GradientRows(const Geometry& g, DType dtype, const TensorView& dout, const TensorView& dq,
               const TensorView& dk, const TensorView& dv, const ByteSpan& context,
               Workspace& workspace, cudaStream_t stream);

  void* do_sel() const { return do_sel_; }
  void* dq_sel() const { return dq_sel_; }
  void* dk_sel() const { return dk_sel_; }
  void* dv_sel() const { return dv_sel_; }

  // The gather backward of dq_sel, dk_sel and dv_sel into dq, dk and dv (launch_gather_backward),
  // in an order that reads every block before the launch that overwrites its memory is queued.
  void gather_backward(const std::int32_t* position, const TensorView& dq, const TensorView& dk,
                       const TensorView& dv);

 private:
  Geometry g_;
  DType dtype_;
  Workspace& workspace_;
  cudaStream_t stream_;
  GradientScratch where_;
  std::size_t block_;
  char* ws_ = nullptr;  // kOneBlock: the workspace block that holds dk_sel
  void *do_sel_ = nullptr, *dq_sel_ = nullptr, *dk_sel_ = nullptr, *dv_sel_ = nullptr;
};

}  // namespace lighthouse::cuda
