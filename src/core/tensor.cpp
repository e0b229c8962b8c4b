#include "lighthouse/tensor.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>

#include "core/backend.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse {

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return 4;
    case DType::kFloat64:
      return 8;
    case DType::kBFloat16:
      return 2;
    case DType::kFloat16:
      return 2;
    case DType::kInt32:
      return 4;
    case DType::kInt64:
      return 8;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat64:
      return "float64";
    case DType::kBFloat16:
      return "bfloat16";
    case DType::kFloat16:
      return "float16";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
  }
  return "unknown";
}

const char* device_name(Device device) {
  return device == Device::kCUDA ? "cuda" : "cpu";
}

static std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

DType parse_dtype(const std::string& text, const char* param) {
  const std::string t = lower(text);
  if (t == "float32" || t == "fp32" || t == "f32") return DType::kFloat32;
  if (t == "float64" || t == "fp64" || t == "f64") return DType::kFloat64;
  if (t == "bfloat16" || t == "bf16") return DType::kBFloat16;
  if (t == "float16" || t == "fp16" || t == "f16" || t == "half") return DType::kFloat16;
  if (t == "int32" || t == "i32") return DType::kInt32;
  if (t == "int64" || t == "i64") return DType::kInt64;
  throw InvalidArgument(param, text,
                        "must be one of float32, float64, bfloat16, float16, int32, int64");
}

Device parse_device(const std::string& text, const char* param) {
  const std::string t = lower(text);
  if (t == "cpu") return Device::kCPU;
  if (t == "cuda" || t == "gpu") return Device::kCUDA;
  throw InvalidArgument(param, text, "must be cpu or cuda");
}

TensorView TensorView::contiguous(void* data, DType dtype, Device device,
                                  std::initializer_list<std::int64_t> shape) {
  if (shape.size() > static_cast<std::size_t>(kMaxRank)) {
    throw InvalidArgument("rank", std::to_string(shape.size()), "must be at most 4");
  }
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.device = device;
  v.rank = static_cast<int>(shape.size());
  std::copy(shape.begin(), shape.end(), v.shape.begin());
  std::int64_t stride = 1;
  for (int d = v.rank - 1; d >= 0; --d) {
    v.strides[d] = stride;
    stride *= v.shape[d];
  }
  return v;
}

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (int d = 0; d < rank; ++d) n *= shape[d];
  return n;
}

bool TensorView::is_contiguous() const {
  std::int64_t stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != stride) return false;
    stride *= shape[d];
  }
  return true;
}

TensorView TensorView::transposed(int a, int b) const {
  TensorView v = *this;
  std::swap(v.shape[a], v.shape[b]);
  std::swap(v.strides[a], v.strides[b]);
  return v;
}

std::string TensorView::shape_string() const {
  std::string s = "[";
  for (int d = 0; d < rank; ++d) {
    if (d) s += ", ";
    s += std::to_string(shape[d]);
  }
  return s + "]";
}

Tensor Tensor::empty(DType dtype, Device device, std::initializer_list<std::int64_t> shape) {
  Tensor t;
  t.view_ = TensorView::contiguous(nullptr, dtype, device, shape);
  const std::size_t bytes = std::max<std::size_t>(t.view_.nbytes(), 1);
  if (device == Device::kCPU) {
    // 64-byte alignment: whole cache lines and aligned vector loads.
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) throw Error("out of host memory allocating " + std::to_string(bytes) + " bytes");
    t.storage_ = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
  } else {
    Backend& backend = backend_for(device);
    void* p = backend.allocate(bytes);
    t.storage_ = std::shared_ptr<void>(p, [&backend](void* q) { backend.deallocate(q); });
  }
  t.view_.data = t.storage_.get();
  return t;
}

Tensor Tensor::zeros(DType dtype, Device device, std::initializer_list<std::int64_t> shape) {
  Tensor t = empty(dtype, device, shape);
  if (device == Device::kCPU) {
    std::memset(t.view_.data, 0, t.view_.nbytes());
  } else {
    backend_for(device).memset_zero(t.view_.data, t.view_.nbytes());
  }
  return t;
}

}  // namespace lighthouse
