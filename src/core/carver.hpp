// Offsets of consecutive parts of one buffer, each part starting on a 256-byte boundary (what
// cuDNN's tensors and 16-byte vector accesses need). Used for the context layout (every
// backend) and for the CUDA backend's scratch buffers.
#pragma once

#include <cstddef>

namespace lighthouse {

class Carver {
 public:
  static constexpr std::size_t kAlignment = 256;

  // The offset of a new part of `bytes` bytes.
  std::size_t take(std::size_t bytes) {
    const std::size_t at = size_;
    size_ += (bytes + kAlignment - 1) / kAlignment * kAlignment;
    return at;
  }
  // The bytes of all parts taken so far (0 when none).
  std::size_t size() const { return size_; }

 private:
  std::size_t size_ = 0;
};

}  // namespace lighthouse
