// The forward's stages over the selected rows: pyramid, selection, gather, the dense attention
// and the scatter, run on one problem (the whole call), or pipelined over head groups so that
// the memory-bound stages of one group overlap the compute-bound attention of another.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cuda/cudnn_attention.hpp"
#include "cuda/head_groups.hpp"
#include "cuda/side_stream.hpp"
#include "cuda/stage_timer.hpp"
#include "cuda/stages.hpp"

namespace lighthouse::cuda {

// The dense attention over the gathered rows of `g`: contiguous [B, H, S, D] tensors.
SdpaDesc gathered_sdpa_desc(const Geometry& g, DType dtype, double scale, bool deterministic);

// One problem the stages run on: the whole call, or one head group of it.
struct ForwardProblem {
  Geometry g;
  DType dtype = DType::kBFloat16;
  TokenTensor q, k, v, out;
  std::int32_t* indices = nullptr;  // [BH, S]
  std::int32_t* inverse = nullptr;  // [BH, P]
  float* stats = nullptr;           // [BH, S]
  std::array<void*, 4> sel{};       // gathered q, k, v and the attention output, [BH, S, D]
};

// Head group `unit` of `whole` as a problem of its own (stages.hpp): batch 1, unit.heads heads,
// every buffer advanced to the group's first row.
ForwardProblem group_problem(const ForwardProblem& whole, const HeadGroup& unit);

// Where a problem's scratch lies in one buffer: the pooled scores of q and k and the coarsest
// means of q, k and v, all dead once the gather has run.
struct ForwardScratch {
  std::size_t score_q = 0, score_k = 0;
  std::array<std::size_t, 3> coarse{};
  std::size_t bytes = 0;
};
ForwardScratch forward_scratch(const Geometry& g, DType dtype);

// The five stages of `p` on `stream`, one after another, each marked on `timer`. `scratch`
// holds forward_scratch(p.g, p.dtype).bytes.
void run_forward(const ForwardProblem& p, double scale, char* scratch, cudaStream_t stream,
                 StageTimer& timer);

// The stages of every unit of `whole` (head_groups(); at least two): the pyramid, selection and
// gather of all units on `lane`'s stream, in order; the attention of each unit on `main` once
// its gather is done; its scatter on the side stream once its attention is done. So the
// attention of unit i overlaps the preparation of the units after it and the scatter of unit
// i - 1. Everything starts after the work already queued on `main`, and `main` waits for all of
// it before this returns (no host synchronisation). `scratch` holds the forward_scratch() of the
// largest unit; the units use it in turn (their gathers are ordered on the side stream). The
// result is the bits of run_forward(whole): every kernel computes each (batch, head)'s rows
// alone.
void run_forward_pipelined(const ForwardProblem& whole, const std::vector<HeadGroup>& units,
                           double scale, char* scratch, cudaStream_t main, SideLane& lane);

}  // namespace lighthouse::cuda
