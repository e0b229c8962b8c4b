// Device memory the CUDA backend keeps between calls for their scratch: a per-(device, stream)
// workspace that grows on demand and is reused by every call on that stream (calls on one stream
// must not be issued from several host threads at once), and loans of cuDNN's cached workspace
// while it is idle between attention calls.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <mutex>
#include <utility>

namespace lighthouse::cuda {

class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace();
  // At least `bytes` of device memory that work queued on `stream` may use from now on.
  void* get(cudaStream_t stream, std::size_t bytes);
  // Frees every cached buffer (after the device is idle).
  void release();

 private:
  struct Buffer {
    void* ptr = nullptr;
    std::size_t bytes = 0;
  };
  std::mutex mutex_;
  std::map<std::pair<int, cudaStream_t>, Buffer> buffers_;
};

// A loan of cuDNN's cached workspace (cudnn_borrow_workspace) for the rest of a scope: null when
// it is too small; returned when the scope ends, after the work that uses it has been queued.
class WorkspaceLoan {
 public:
  WorkspaceLoan(std::size_t bytes, cudaStream_t stream);
  WorkspaceLoan(const WorkspaceLoan&) = delete;
  WorkspaceLoan& operator=(const WorkspaceLoan&) = delete;
  ~WorkspaceLoan();
  void* get() const { return data_; }

 private:
  cudaStream_t stream_;
  void* data_;
};

}  // namespace lighthouse::cuda
