// Device memory of the CUDA model: every allocation goes through DeviceArray, which takes it
// from the device's default stream-ordered pool (the pool the library's contexts and scratch
// come from, so one high-water mark covers both) and, when the device is full, throws
// OutOfDeviceMemory naming what was being allocated, the bytes needed, the bytes free and the
// flags that help.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace lighthouse::train::cuda {

// "1234567 bytes (1.2 GiB)".
std::string describe_bytes(std::size_t bytes);

// Bytes a new allocation from the default pool can still get: what the driver reports free
// plus what the pool holds unused (freed blocks it keeps for reuse).
std::size_t device_bytes_available();

// The text every out-of-memory error of the model ends with.
std::string out_of_memory_remedy();

// Throws OutOfDeviceMemory for `what` (e.g. "layer 3 saved activations: hg [4096, 3072]
// bfloat16") needing `bytes`.
[[noreturn]] void throw_out_of_memory(const std::string& what, std::size_t bytes);

// One owning stream-ordered allocation (cudaMallocAsync on `stream`, freed with cudaFreeAsync
// on the same stream). Sizes are rounded up to 256 bytes, so consecutive offsets computed by
// the model keep every buffer 256-byte aligned (cuBLASLt's preferred alignment).
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const std::string& what, std::size_t bytes, cudaStream_t stream);
  DeviceArray(DeviceArray&& other) noexcept;
  DeviceArray& operator=(DeviceArray&& other) noexcept;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { reset(); }

  void reset() noexcept;
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
  cudaStream_t stream_ = nullptr;
};

// The default pool's high-water mark of bytes in use since the last reset (the model's buffers,
// the library's attention contexts and per-stream scratch), then resets it to what is in use now.
std::int64_t take_pool_peak();

}  // namespace lighthouse::train::cuda
