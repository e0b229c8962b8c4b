// FLOPs of a training step, counted from shapes, for tokens/s-independent throughput and MFU.
//
// Two counts of the same step:
//  - executed: what the model computes. Matrix products (the q/k/v/o and SwiGLU projections
//    and the LM head, forward and the two backward products of each: 3 x 2mnk) and attention as
//    lighthouse::Plan counts it: Lighthouse layers over their gathered length S, dense layers
//    over N (causal: half the S x S products; backward 2.5 x forward).
//  - dense-equivalent: the same step as if every layer were dense attention at N: what a dense
//    model would have to compute to train on the same tokens. Its MFU is the usual one (the
//    rate a dense run would need to match this step time).
// Both leave out the element-wise layers (norms, rotary, SwiGLU's gate, cross-entropy, AdamW), the
// pyramid, selection, gather and scatter, and any recomputation (the model FLOPs of MFU, not the
// hardware FLOPs).
#pragma once

#include <cstdint>
#include <vector>

#include "lighthouse/config.hpp"
#include "train/model.hpp"

namespace lighthouse::train {

struct StepFlops {
  double matmul = 0;
  double attention = 0;                   // as executed (Lighthouse layers at S)
  double attention_dense_equivalent = 0;  // every layer dense at N
  double executed() const { return matmul + attention; }
  double dense_equivalent() const { return matmul + attention_dense_equivalent; }
  StepFlops& operator+=(const StepFlops& o);
};

// Parameters of a model of this shape (what Model and the CUDA model allocate), from shapes.
std::int64_t parameter_count(const ModelConfig& model);

// The forward pass's matrix products over `rows` token rows: per layer 2 rows C (3C + C + 2F)
// + 2 rows F C, and the LM head 2 rows C V.
double matmul_forward_flops(const ModelConfig& model, std::int64_t rows);

// One training micro-batch (forward + backward) of `batch` sequences of `seq` tokens with the
// given per-layer attention (one Config per layer). Throws InvalidArgument when a layer's config
// does not fit seq (make_plan's rules).
StepFlops training_flops(const ModelConfig& model, const std::vector<Config>& attention,
                         std::int64_t batch, std::int64_t seq);

}  // namespace lighthouse::train
