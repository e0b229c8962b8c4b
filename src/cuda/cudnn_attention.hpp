// cuDNN's fused flash attention (bfloat16 and float16) behind attention.hpp's sdpa_forward and
// sdpa_backward, which check what every dtype shares and route here. This file and its .cpp
// hold cuDNN alone: a shape-keyed graph cache and one workspace per thread and device.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "cuda/attention.hpp"

namespace lighthouse::cuda {

// sdpa_forward and sdpa_backward (attention.hpp) for desc.dtype bfloat16 or float16, after
// attention.cpp's checks (dims, scale, dtype, non-null pointers). These add cuDNN's own rules:
// 16-byte aligned pointers, the head dim and the strides (InvalidArgument naming the field).
void cudnn_sdpa_forward(const SdpaDesc& desc, const void* q, const void* k, const void* v, void* o,
                        float* stats, cudaStream_t stream);
void cudnn_sdpa_backward(const SdpaDesc& desc, const void* q, const void* k, const void* v,
                         const void* o, const void* dout, const float* stats, void* dq, void* dk,
                         void* dv, cudaStream_t stream);

// Introspection for tests and benchmarks: the cuDNN graphs this thread has built on the current
// device (forward and backward count separately) and the bytes of its cached workspace there.
std::size_t cudnn_cached_graph_count();
std::size_t cudnn_workspace_bytes();
// Frees this thread's cached cuDNN workspace on the current device (waits for its last use).
void cudnn_release_workspace();

// The cached cuDNN workspace lent out as scratch between attention calls: once an attention call
// is queued on `stream`, its workspace is idle until the next one, and work queued on `stream`
// in between may use it. Returns null (lends nothing) when the workspace is smaller than `bytes`.
// A non-null loan must end with cudnn_return_workspace(stream) after the last work that uses it
// is queued, and before the next attention call of this thread: later calls on other streams
// then wait for that work, and a workspace that grows waits for it before it is freed.
void* cudnn_borrow_workspace(std::size_t bytes, cudaStream_t stream);
void cudnn_return_workspace(cudaStream_t stream);

}  // namespace lighthouse::cuda
