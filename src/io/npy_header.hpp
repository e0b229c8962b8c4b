// The .npy header: the fixed preamble (magic string, version, header length) and the Python
// dict literal after it. Pure functions over bytes, shared by parse_npy (whole file in memory)
// and read_npy (which reads the header first so that the data can go straight into the array's
// buffer, after its size has been checked against the file size).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lighthouse/tensor.hpp"

namespace lighthouse::npy {

// The longest preamble (versions 2.0 and 3.0): magic (6) + version (2) + u32 header length.
inline constexpr std::size_t kMaxPreamble = 12;

struct Preamble {
  int major = 0;                 // 1, 2 or 3 (the minor version is always 0)
  std::size_t header_begin = 0;  // where the dict text starts: 10 or 12
  std::uint64_t header_end = 0;  // where the data starts; <= the file size
};

// Checks magic, version and that the declared header fits in the file. `head` holds the
// first min(file_size, kMaxPreamble) bytes of a file of `file_size` bytes.
Preamble read_preamble(std::string_view head, std::uint64_t file_size, const std::string& name);

struct Layout {
  DType dtype = DType::kFloat32;
  std::vector<std::int64_t> shape;
  std::int64_t numel = 1;
  std::uint64_t data_bytes = 0;  // numel * itemsize, equal to the bytes after the header
};

// Parses the dict text and checks the data the shape needs against `data_bytes_present`, the
// number of bytes after the header.
Layout parse_header(std::string_view text, std::uint64_t data_bytes_present,
                    const std::string& name);

// The .npy descr of `dtype` ("<f4", ...) and its item size; throws InvalidArgument naming
// `dtype` for a dtype .npy I/O does not support.
const char* descr_of(DType dtype);
std::size_t itemsize_of(DType dtype);

// Python's repr of a shape tuple: "()", "(5,)", "(2, 3)".
std::string shape_repr(const std::vector<std::int64_t>& shape);

// The preamble and header numpy writes for a C-order array: version 1.0 (2.0 only when the
// header outgrows 1.0's u16 length, as numpy does), padded with spaces and a final '\n' so that
// the data starts at a multiple of 64 bytes.
std::string format_header(DType dtype, const std::vector<std::int64_t>& shape);

}  // namespace lighthouse::npy
