// An owning device allocation for tests, with host round trips. Errors throw lighthouse::Error
// (through CUDA_CHECK), which gtest reports as a failure of the test that hit them.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "cuda/check.hpp"

namespace lighthouse::testing {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
    CUDA_CHECK(cudaMalloc(&ptr_, bytes == 0 ? 1 : bytes));
    CUDA_CHECK(cudaMemset(ptr_, 0, bytes == 0 ? 1 : bytes));
    // cudaMemset and pageable cudaMemcpy may still be in flight on the legacy default stream,
    // which work on a non-blocking stream does not wait for: finish them here.
    CUDA_CHECK(cudaDeviceSynchronize());
  }
  template <typename T>
  static DeviceBuffer from_host(const std::vector<T>& host) {
    DeviceBuffer buffer(host.size() * sizeof(T));
    CUDA_CHECK(cudaMemcpy(buffer.ptr_, host.data(), buffer.bytes_, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaDeviceSynchronize());
    return buffer;
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept : ptr_(other.ptr_), bytes_(other.bytes_) {
    other.ptr_ = nullptr;
    other.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(ptr_, other.ptr_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) (void)cudaFree(ptr_);
  }

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }

  // Waits for the device, then copies the whole buffer back.
  template <typename T>
  std::vector<T> to_host() const {
    std::vector<T> host(bytes_ / sizeof(T));
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(host.data(), ptr_, host.size() * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace lighthouse::testing
