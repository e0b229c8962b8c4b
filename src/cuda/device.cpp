#include "cuda/device.hpp"

#include "cuda/check.hpp"
#include "cuda/cudnn_attention.hpp"

namespace lighthouse::cuda {

CudaDevice::CudaDevice() {
  // Freed context buffers stay in the pool for the next step instead of going back to the
  // driver at every synchronisation.
  int device = 0;
  cudaMemPool_t pool = nullptr;
  if (cudaGetDevice(&device) == cudaSuccess &&
      cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
    std::uint64_t keep = UINT64_MAX;
    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
  }
  (void)cudaGetLastError();
}

void* CudaDevice::allocate(std::size_t bytes) {
  void* ptr = nullptr;
  CUDA_CHECK(cudaMalloc(&ptr, bytes));
  return ptr;
}

void CudaDevice::deallocate(void* ptr) noexcept {
  cudaFree(ptr);
}

void CudaDevice::memset_zero(void* ptr, std::size_t bytes) {
  CUDA_CHECK(cudaMemset(ptr, 0, bytes));
  CUDA_CHECK(cudaStreamSynchronize(nullptr));
}

void CudaDevice::copy_to_host(void* host_dst, const void* src, std::size_t bytes) {
  CUDA_CHECK(cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost));
}

void CudaDevice::copy_from_host(void* dst, const void* host_src, std::size_t bytes) {
  CUDA_CHECK(cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice));
  // From pageable memory the copy may still be in flight; work on other streams must see it.
  CUDA_CHECK(cudaStreamSynchronize(nullptr));
}

void CudaDevice::synchronize() {
  CUDA_CHECK(cudaDeviceSynchronize());
}

// Events on the default stream around the work, from an idle device: what the GPU spends,
// launch gaps included, without the host's timer resolution or the final synchronisation.
double CudaDevice::time_ms(const std::function<void()>& work) {
  if (!timing_events_[0]) {
    for (auto& e : timing_events_) CUDA_CHECK(cudaEventCreate(&e));
  }
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaEventRecord(timing_events_[0], nullptr));
  work();
  CUDA_CHECK(cudaEventRecord(timing_events_[1], nullptr));
  CUDA_CHECK(cudaEventSynchronize(timing_events_[1]));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, timing_events_[0], timing_events_[1]));
  CUDA_CHECK(cudaDeviceSynchronize());  // work on other streams, if any, is done too
  return ms;
}

std::int64_t CudaDevice::memory_in_use() {
  std::size_t free = 0, total = 0;
  CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return static_cast<std::int64_t>(total - free);
}

void CudaDevice::release_cached_memory() {
  workspace_.release();
  cudnn_release_workspace();
  int device = 0;
  cudaMemPool_t pool = nullptr;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
}

}  // namespace lighthouse::cuda
