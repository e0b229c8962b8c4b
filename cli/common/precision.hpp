// Host-side conversion between float32 and the dtypes a backend may compute in. The CLI reads and
// writes float32 files; for a bfloat16/float16 run it rounds on the host (to nearest, ties to
// even, as a GPU cast does) before the upload and widens after the download.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "lighthouse/tensor.hpp"

namespace lighthouse::cli {

std::uint16_t float_to_bfloat16(float value);
float bfloat16_to_float(std::uint16_t bits);
std::uint16_t float_to_float16(float value);
float float16_to_float(std::uint16_t bits);

// `count` float32 values as `dtype` (float32, float64, bfloat16 or float16) bytes.
std::vector<unsigned char> convert_from_float32(const float* src, std::size_t count, DType dtype);
// The inverse: `count` values of `dtype` at `src` widened or narrowed to float32.
void convert_to_float32(const void* src, std::size_t count, DType dtype, float* dst);

}  // namespace lighthouse::cli
