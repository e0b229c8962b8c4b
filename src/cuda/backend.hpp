// The CUDA backend: Lighthouse attention on one NVIDIA GPU. The stages are custom kernels
// (pyramid.cu, selection.cu, gather.cu, scatter.cu); the dense causal attention over the
// gathered rows (attention.cpp) is cuDNN's fused flash attention for bf16/fp16
// (cudnn_attention.cpp) and reference kernels for fp32 (reference_attention.cu).
#pragma once

#include <memory>

#include "core/backend.hpp"

namespace lighthouse::cuda {

// The backend for the current CUDA device, or null when no GPU is present.
std::unique_ptr<Backend> make_backend();

}  // namespace lighthouse::cuda
