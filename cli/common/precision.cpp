#include "common/precision.hpp"

#include <bit>
#include <cstring>
#include <string>

#include "lighthouse/error.hpp"

namespace lighthouse::cli {

std::uint16_t float_to_bfloat16(float value) {
  std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40);
  // Adding 0x7fff plus the lowest kept bit rounds to nearest with ties to even; a carry into
  // the exponent is the correct rounding up (to infinity at the top of the range).
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>(bits >> 16);
}

float bfloat16_to_float(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

std::uint16_t float_to_float16(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  std::uint32_t magnitude = bits & 0x7fffffffu;
  std::uint32_t half = 0;
  if (magnitude >= 0x47800000u) {
    // |value| >= 65536 (or Inf/NaN): infinity, or a quiet NaN.
    half = magnitude > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (magnitude < 0x38800000u) {
    // Below 2^-14 the result is subnormal: adding 0.5 makes the float unit 2^-24, so the FPU's
    // own round-to-nearest-even does the rounding and the low mantissa bits are the answer.
    const float shifted = std::bit_cast<float>(magnitude) + 0.5f;
    half = std::bit_cast<std::uint32_t>(shifted) - std::bit_cast<std::uint32_t>(0.5f);
  } else {
    // Normal: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to
    // nearest even. Values in [65520, 65536) carry into the exponent and become infinity.
    const std::uint32_t odd = (magnitude >> 13) & 1u;
    magnitude += (static_cast<std::uint32_t>(15 - 127) << 23) + 0xfffu + odd;
    half = magnitude >> 13;
  }
  return static_cast<std::uint16_t>(sign | half);
}

float float16_to_float(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float32
    const float value = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -value : value;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

std::vector<unsigned char> convert_from_float32(const float* src, std::size_t count, DType dtype) {
  std::vector<unsigned char> out(count * dtype_size(dtype));
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(out.data(), src, count * sizeof(float));
      break;
    case DType::kFloat64: {
      auto* dst = reinterpret_cast<double*>(out.data());
#pragma omp parallel for schedule(static)
      for (std::size_t i = 0; i < count; ++i) dst[i] = src[i];
      break;
    }
    case DType::kBFloat16: {
      auto* dst = reinterpret_cast<std::uint16_t*>(out.data());
#pragma omp parallel for schedule(static)
      for (std::size_t i = 0; i < count; ++i) dst[i] = float_to_bfloat16(src[i]);
      break;
    }
    case DType::kFloat16: {
      auto* dst = reinterpret_cast<std::uint16_t*>(out.data());
#pragma omp parallel for schedule(static)
      for (std::size_t i = 0; i < count; ++i) dst[i] = float_to_float16(src[i]);
      break;
    }
    default:
      throw Error(std::string("cannot convert float32 to ") + dtype_name(dtype));
  }
  return out;
}

void convert_to_float32(const void* src, std::size_t count, DType dtype, float* dst) {
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(dst, src, count * sizeof(float));
      break;
    case DType::kFloat64: {
      const auto* in = static_cast<const double*>(src);
#pragma omp parallel for schedule(static)
      for (std::size_t i = 0; i < count; ++i) dst[i] = static_cast<float>(in[i]);
      break;
    }
    case DType::kBFloat16: {
      const auto* in = static_cast<const std::uint16_t*>(src);
#pragma omp parallel for schedule(static)
      for (std::size_t i = 0; i < count; ++i) dst[i] = bfloat16_to_float(in[i]);
      break;
    }
    case DType::kFloat16: {
      const auto* in = static_cast<const std::uint16_t*>(src);
#pragma omp parallel for schedule(static)
      for (std::size_t i = 0; i < count; ++i) dst[i] = float16_to_float(in[i]);
      break;
    }
    default:
      throw Error(std::string("cannot convert ") + dtype_name(dtype) + " to float32");
  }
}

}  // namespace lighthouse::cli
