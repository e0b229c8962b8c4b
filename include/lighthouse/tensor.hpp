// A small non-owning tensor view (shape, strides, dtype, device) and an owning host/device
// tensor built on it. Lighthouse tensors are rank <= 4; q, k, v, out and their gradients are
// [B, N, H, D] with a unit stride on D and any strides on the other three dimensions (so a
// [B, H, N, D] buffer can be passed as a permuted view without a copy).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

namespace lighthouse {

enum class DType : std::uint8_t { kFloat32, kFloat64, kBFloat16, kFloat16, kInt32, kInt64 };
enum class Device : std::uint8_t { kCPU, kCUDA };

std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);     // "float32", "bfloat16", ...
const char* device_name(Device device);  // "cpu", "cuda"
// Parses "float32"/"fp32"/"f32", "bfloat16"/"bf16", ... ; throws InvalidArgument naming `param`.
DType parse_dtype(const std::string& text, const char* param = "dtype");
Device parse_device(const std::string& text, const char* param = "device");

inline constexpr int kMaxRank = 4;

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  Device device = Device::kCPU;
  int rank = 0;
  std::array<std::int64_t, kMaxRank> shape{};
  std::array<std::int64_t, kMaxRank> strides{};  // in elements, not bytes

  // A C-order (row-major) view of `data`.
  static TensorView contiguous(void* data, DType dtype, Device device,
                               std::initializer_list<std::int64_t> shape);

  std::int64_t numel() const;
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
  bool is_contiguous() const;
  // Same data with dimensions a and b exchanged (a view, no copy).
  TensorView transposed(int a, int b) const;
  std::string shape_string() const;  // "[1, 4096, 2, 32]"

  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data);
  }
};

// An owning, contiguous tensor. Memory comes from the backend of its device.
class Tensor {
 public:
  Tensor() = default;
  static Tensor empty(DType dtype, Device device, std::initializer_list<std::int64_t> shape);
  static Tensor zeros(DType dtype, Device device, std::initializer_list<std::int64_t> shape);

  const TensorView& view() const { return view_; }
  operator const TensorView&() const { return view_; }  // NOLINT: a Tensor is usable as a view
  template <typename T>
  T* data() const {
    return view_.data_as<T>();
  }
  std::int64_t numel() const { return view_.numel(); }
  bool defined() const { return view_.data != nullptr; }

 private:
  std::shared_ptr<void> storage_;
  TensorView view_;
};

}  // namespace lighthouse
