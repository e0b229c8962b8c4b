// Dense causal attention over one-token sequences (s = 1) in bfloat16/float16, which cuDNN's
// SDPA rejects: o = v, stats = scale * q.k; dv = the group's summed dout, dq = dk = 0.
// Shapes, strides and stats as in SdpaDesc (attention.hpp); desc.s must be 1.
#pragma once

#include <cuda_runtime.h>

#include "cuda/attention.hpp"

namespace lighthouse::cuda {

void single_key_forward(const SdpaDesc& desc, const void* q, const void* k, const void* v, void* o,
                        float* stats, cudaStream_t stream);

void single_key_backward(const SdpaDesc& desc, const void* dout, void* dq, void* dk, void* dv,
                         cudaStream_t stream);

}  // namespace lighthouse::cuda
