// The forward's stages over the selected rows: pyramid, selection, gather, the dense attention
// and the scatter, in one place for the backend (the buffers they run on, the scratch they
// need, the attention's descriptor) so that backend.cpp only decides where the memory lives.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>

#include "cuda/cudnn_attention.hpp"
#include "cuda/stage_timer.hpp"
#include "cuda/stages.hpp"

namespace lighthouse::cuda {

// The dense attention over the gathered rows of `g`: contiguous [B, H, S, D] tensors.
SdpaDesc gathered_sdpa_desc(const Geometry& g, DType dtype, double scale, bool deterministic);

// The buffers of one call the stages run on.
struct ForwardProblem {
  Geometry g;
  DType dtype = DType::kBFloat16;
  TokenTensor q, k, v, out;
  std::int32_t* indices = nullptr;  // [BH, S]
  std::int32_t* inverse = nullptr;  // [BH, P]
  float* stats = nullptr;           // [BH, S]
  std::array<void*, 4> sel{};       // gathered q, k, v and the attention output, [BH, S, D]
};

// Where a problem's scratch lies in one buffer: the pooled scores of q and k, the first-token
// scores of the causal selection (empty parts otherwise) and the coarsest means of q, k and v,
// all dead once the gather has run.
struct ForwardScratch {
  std::size_t score_q = 0, score_k = 0;
  std::size_t first_q = 0, first_k = 0;
  std::array<std::size_t, 3> coarse{};
  std::size_t bytes = 0;
};
ForwardScratch forward_scratch(const Geometry& g, DType dtype);

// The five stages of `p` on `stream`, one after another, each marked on `timer`. `scratch`
// holds forward_scratch(p.g, p.dtype).bytes.
void run_forward(const ForwardProblem& p, double scale, char* scratch, cudaStream_t stream,
                 StageTimer& timer);

}  // namespace lighthouse::cuda
