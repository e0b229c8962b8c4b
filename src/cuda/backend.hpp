// The CUDA backend: Lighthouse attention on one NVIDIA GPU. The stages are custom kernels
// (pyramid.cu, selection.cu, gather.cu, scatter.cu); the dense causal attention over the
// gathered rows is cuDNN's fused flash attention (cudnn_attention.hpp).
#pragma once

#include <memory>

#include "lighthouse/backend.hpp"

namespace lighthouse::cuda {

// The backend for the current CUDA device, or null when no GPU is present.
std::unique_ptr<Backend> make_backend();

}  // namespace lighthouse::cuda
