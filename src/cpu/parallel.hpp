// Small helpers for the CPU backend's OpenMP parallelism and scratch memory.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

namespace lighthouse::cpu {

// Options::threads == 0 means every hardware thread OpenMP would use.
inline int resolve_threads(int requested) {
  return requested > 0 ? requested : omp_get_max_threads();
}

// Splits [0, n) into chunks of about `grain` items: the unit of work of a parallel loop. The
// split never depends on the thread count, so neither do the results.
inline std::int64_t chunk_count(std::int64_t n, std::int64_t grain) {
  return (n + grain - 1) / grain;
}

// Work-item sizes of the stages' parallel loops: tokens, and gathered rows, per item.
inline constexpr std::int64_t kTokenGrain = 1024;
inline constexpr std::int64_t kRowGrain = 256;

// Runs body(bh, begin, end, scratch) for every work item: each (batch * head) index `bh` with
// each chunk [begin, end) of [0, n) of `grain` items, in parallel over `threads`. `scratch` is a
// per-thread array of `width` doubles (accumulators). Items and their order inside an item do
// not depend on the thread count, so neither do the results.
template <typename Body>
void parallel_chunks(std::int64_t bh_count, std::int64_t n, std::int64_t grain, std::int64_t width,
                     int threads, Body&& body) {
  const std::int64_t chunks = chunk_count(n, grain);
#pragma omp parallel num_threads(threads)
  {
    std::vector<double> scratch(static_cast<std::size_t>(width));
#pragma omp for schedule(dynamic)
    for (std::int64_t w = 0; w < bh_count * chunks; ++w) {
      const std::int64_t bh = w / chunks, c = w % chunks;
      body(bh, c * grain, std::min(n, (c + 1) * grain), scratch);
    }
  }
}

// An uninitialised, 64-byte aligned array: large scratch buffers need no zero-fill.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t n) : size_(n) {
    if (n == 0) return;
    void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    ptr_.reset(static_cast<T*>(p));
  }
  T* data() { return ptr_.get(); }
  const T* data() const { return ptr_.get(); }
  std::size_t size() const { return size_; }
  T& operator[](std::size_t i) { return ptr_.get()[i]; }
  const T& operator[](std::size_t i) const { return ptr_.get()[i]; }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> ptr_;
  std::size_t size_ = 0;
};

}  // namespace lighthouse::cpu
