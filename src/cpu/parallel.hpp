// Small helpers for the CPU backend's OpenMP parallelism and scratch memory.
#pragma once

#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

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
