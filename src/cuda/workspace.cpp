#include "cuda/workspace.hpp"

#include "cuda/check.hpp"
#include "cuda/cudnn_attention.hpp"

namespace lighthouse::cuda {

Workspace::~Workspace() {
  for (auto& entry : buffers_) cudaFree(entry.second.ptr);  // streams may be gone by now
}

void* Workspace::get(cudaStream_t stream, std::size_t bytes) {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex_);
  Buffer& buf = buffers_[{device, stream}];
  if (buf.bytes < bytes) {
    if (buf.ptr) CUDA_CHECK(cudaFreeAsync(buf.ptr, stream));
    buf = Buffer{};
    CUDA_CHECK(cudaMallocAsync(&buf.ptr, bytes, stream));
    buf.bytes = bytes;
  }
  return buf.ptr;
}

void Workspace::release() {
  std::lock_guard<std::mutex> lock(mutex_);
  CUDA_CHECK(cudaDeviceSynchronize());
  for (auto& entry : buffers_) CUDA_CHECK(cudaFree(entry.second.ptr));
  buffers_.clear();
}

WorkspaceLoan::WorkspaceLoan(std::size_t bytes, cudaStream_t stream)
    : stream_(stream), data_(cudnn_borrow_workspace(bytes, stream)) {}

WorkspaceLoan::~WorkspaceLoan() {
  if (!data_) return;
  try {
    cudnn_return_workspace(stream_);
  } catch (...) {  // nothing to report from a destructor; the next CUDA call reports the error
  }
}

}  // namespace lighthouse::cuda
