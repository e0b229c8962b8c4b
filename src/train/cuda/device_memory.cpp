#include "train/cuda/device_memory.hpp"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "cuda/check.hpp"
#include "train/language_model.hpp"

namespace lighthouse::train::cuda {

namespace {

cudaMemPool_t default_pool() {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  cudaMemPool_t pool = nullptr;
  CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  return pool;
}

std::uint64_t pool_attribute(cudaMemPool_t pool, cudaMemPoolAttr attribute) {
  std::uint64_t value = 0;
  CUDA_CHECK(cudaMemPoolGetAttribute(pool, attribute, &value));
  return value;
}

}  // namespace

std::string describe_bytes(std::size_t bytes) {
  char text[64];
  std::snprintf(text, sizeof text, "%zu bytes (%.2f GiB)", bytes,
                static_cast<double>(bytes) / (1u << 30));
  return text;
}

std::size_t device_bytes_available() {
  std::size_t free = 0, total = 0;
  CUDA_CHECK(cudaMemGetInfo(&free, &total));
  const cudaMemPool_t pool = default_pool();
  const std::uint64_t reserved = pool_attribute(pool, cudaMemPoolAttrReservedMemCurrent);
  const std::uint64_t used = pool_attribute(pool, cudaMemPoolAttrUsedMemCurrent);
  return free + static_cast<std::size_t>(reserved > used ? reserved - used : 0);
}

std::string out_of_memory_remedy() {
  return "use --recompute layer (keeps only each layer's input for the backward pass), a "
         "smaller --batch or a shorter --seq";
}

void throw_out_of_memory(const std::string& what, std::size_t bytes) {
  std::size_t available = 0;
  try {
    available = device_bytes_available();
  } catch (const Error&) {  // the message is what matters; an unknown amount is reported as 0
  }
  throw OutOfDeviceMemory("out of device memory allocating " + what + ": needs " +
                          describe_bytes(bytes) + ", " + describe_bytes(available) +
                          " free on the device; " + out_of_memory_remedy());
}

DeviceArray::DeviceArray(const std::string& what, std::size_t bytes, cudaStream_t stream)
    : stream_(stream) {
  const std::size_t rounded = (bytes + 255) / 256 * 256;
  const cudaError_t status = cudaMallocAsync(&ptr_, rounded == 0 ? 256 : rounded, stream);
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();  // not sticky: clear it so the next call does not report it
    ptr_ = nullptr;
    throw_out_of_memory(what, rounded);
  }
  CUDA_CHECK(status);
  bytes_ = rounded;
}

DeviceArray::DeviceArray(DeviceArray&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      stream_(other.stream_) {}

DeviceArray& DeviceArray::operator=(DeviceArray&& other) noexcept {
  if (this != &other) {
    reset();
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    stream_ = other.stream_;
  }
  return *this;
}

void DeviceArray::reset() noexcept {
  if (ptr_ != nullptr) (void)cudaFreeAsync(ptr_, stream_);  // nothing to report from here
  ptr_ = nullptr;
  bytes_ = 0;
}

std::int64_t take_pool_peak() {
  const cudaMemPool_t pool = default_pool();
  // The high-water mark after a reset may read 0 until the next allocation: what is in use now
  // is a floor.
  const std::uint64_t peak = std::max(pool_attribute(pool, cudaMemPoolAttrUsedMemHigh),
                                      pool_attribute(pool, cudaMemPoolAttrUsedMemCurrent));
  std::uint64_t zero = 0;  // resets the high-water mark
  CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
  return static_cast<std::int64_t>(peak);
}

}  // namespace lighthouse::train::cuda
