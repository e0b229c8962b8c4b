// Runs a generic lambda with the C++ type of a CPU dtype (float32 or float64).
#pragma once

#include <string>

#include "lighthouse/error.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::cpu {

template <typename F>
decltype(auto) dispatch_float(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32:
      return f(float{});
    case DType::kFloat64:
      return f(double{});
    default:
      throw InvalidArgument("dtype", dtype_name(dtype),
                            "the cpu backend supports float32 and float64");
  }
}

// Address of row (b, n, h) of a [B, N, H, D] view.
template <typename T>
inline T* row_ptr(const TensorView& t, std::int64_t b, std::int64_t n, std::int64_t h) {
  return static_cast<T*>(t.data) + b * t.strides[0] + n * t.strides[1] + h * t.strides[2];
}

}  // namespace lighthouse::cpu
