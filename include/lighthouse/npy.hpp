// Reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0 on read, 1.0 on write):
// little-endian float32, float64, int32 and int64, C order. Anything else -- a malformed or
// truncated header, big-endian data, Fortran order, another dtype, a size that does not match
// the shape -- raises lighthouse::Error with a message naming the file and what is wrong.
// Never crashes, whatever the bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lighthouse/tensor.hpp"

namespace lighthouse {

struct NpyArray {
  DType dtype = DType::kFloat32;     // kFloat32, kFloat64, kInt32 or kInt64
  std::vector<std::int64_t> shape;   // empty for a scalar
  std::vector<unsigned char> bytes;  // C-order little-endian data, numel * dtype_size

  std::int64_t numel() const;
  template <typename T>
  const T* data() const {
    return reinterpret_cast<const T*>(bytes.data());
  }
  template <typename T>
  T* data() {
    return reinterpret_cast<T*>(bytes.data());
  }
};

// Parses the complete contents of a .npy file. `name` only appears in error messages.
NpyArray parse_npy(std::string_view contents, const std::string& name = "<memory>");
NpyArray read_npy(const std::string& path);

// Serialises to .npy (version 1.0). dtype must be one of the four supported ones.
std::string serialize_npy(DType dtype, const std::vector<std::int64_t>& shape, const void* data);
// Writes atomically: a temporary file in the same folder, flushed, then renamed over `path`.
void write_npy(const std::string& path, DType dtype, const std::vector<std::int64_t>& shape,
               const void* data);

}  // namespace lighthouse
