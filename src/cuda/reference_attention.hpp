// Straightforward fp32 causal attention on the GPU: the kFloat32 path of sdpa_forward/backward
// and the yardstick the cuDNN path is tested against. One thread block per query row (forward,
// dq) or key row (dk, dv); every output element is summed by one thread in a fixed order, so
// results are deterministic without atomics. Cost is O(s^2 d) per (b, h) with no tiling: meant
// for moderate s (the row's probabilities live in shared memory, s floats per block).
//
// Shapes, strides and stats follow SdpaDesc (attention.hpp); desc.dtype is ignored (the
// data are float32). Any element strides, including a non-unit stride on d, are accepted.
#pragma once

#include <cuda_runtime.h>

#include "cuda/attention.hpp"

namespace lighthouse::cuda {

void reference_attention_forward(const SdpaDesc& desc, const float* q, const float* k,
                                 const float* v, float* o, float* stats, cudaStream_t stream);

// stats: the forward's log-sum-exp. Writes dq, dk and dv.
void reference_attention_backward(const SdpaDesc& desc, const float* q, const float* k,
                                  const float* v, const float* o, const float* dout,
                                  const float* stats, float* dq, float* dk, float* dv,
                                  cudaStream_t stream);

}  // namespace lighthouse::cuda
