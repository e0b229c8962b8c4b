// The device half of the CUDA Backend: memory, copies, synchronisation, timing, and the caches
// that release_cached_memory() empties (the per-stream workspace, cuDNN's workspace, the
// stream-ordered pool). backend.cpp derives the stages from it.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "core/backend.hpp"
#include "cuda/workspace.hpp"

namespace lighthouse::cuda {

class CudaDevice : public Backend {
 public:
  CudaDevice();

  Device device() const override { return Device::kCUDA; }

  void* allocate(std::size_t bytes) override;
  void deallocate(void* ptr) noexcept override;
  void memset_zero(void* ptr, std::size_t bytes) override;
  void copy_to_host(void* host_dst, const void* src, std::size_t bytes) override;
  void copy_from_host(void* dst, const void* host_src, std::size_t bytes) override;
  void synchronize() override;
  double time_ms(const std::function<void()>& work) override;
  std::int64_t memory_in_use() override;
  void release_cached_memory() override;

 protected:
  Workspace workspace_;  // the calls' scratch where the caller's buffers cannot hold it

 private:
  std::array<cudaEvent_t, 2> timing_events_{};  // created on first use, kept for the process
};

}  // namespace lighthouse::cuda
