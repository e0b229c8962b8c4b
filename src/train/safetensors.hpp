// The safetensors format, written and read by hand (float32 only, which is all the trainer
// keeps): an 8-byte little-endian header length, a JSON header mapping each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end)} (offsets into the data that follows) plus a
// "__metadata__" object of string -> string, padded with spaces to a multiple of 8 bytes, then
// the raw little-endian data.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lighthouse/error.hpp"

namespace lighthouse::train {

// A checkpoint file that cannot be used: truncated, corrupted, or written for another model.
// The message names the file and the problem; the CLI maps it to exit status 2 (bad input).
class CheckpointError : public Error {
 public:
  CheckpointError(const std::string& file, const std::string& problem)
      : Error(file + ": " + problem) {}
};

struct SafetensorsEntry {
  std::string name;
  std::vector<std::int64_t> shape;
  const float* data = nullptr;  // product(shape) floats
};

// The whole file as bytes, tensors in the order given.
std::string encode_safetensors(const std::vector<SafetensorsEntry>& tensors,
                               const std::map<std::string, std::string>& metadata);

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;
  struct Tensor {
    std::vector<std::int64_t> shape;
    std::size_t offset = 0, bytes = 0;  // into `bytes` below
  };
  std::map<std::string, Tensor> tensors;
  std::string bytes;  // the whole file

  // Copies tensor `name` into out (which must have product(shape) entries); throws
  // CheckpointError naming `file` when the name is missing or its shape differs from `shape`.
  void read(const std::string& file, const std::string& name,
            const std::vector<std::int64_t>& shape, float* out) const;
};

// Parses the bytes of a safetensors file; every inconsistency (short file, header length past
// the end, bad JSON, unknown dtype, offsets out of range or not matching the shape) throws
// CheckpointError naming `file`.
SafetensorsFile decode_safetensors(const std::string& file, std::string bytes);

}  // namespace lighthouse::train
