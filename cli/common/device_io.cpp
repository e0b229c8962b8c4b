#include "common/device_io.hpp"

#include "common/precision.hpp"
#include "lighthouse/device.hpp"

namespace lighthouse::cli {

Tensor allocate(const Shape4& shape, DType dtype, Device device) {
  return Tensor::empty(dtype, device, {shape[0], shape[1], shape[2], shape[3]});
}

Tensor upload(const float* host, const Shape4& shape, DType dtype, Device device) {
  Tensor tensor = allocate(shape, dtype, device);
  const auto count = static_cast<std::size_t>(tensor.numel());
  if (dtype == DType::kFloat32) {
    copy_from_host(device, tensor.data<void>(), host, count * sizeof(float));
  } else {
    const std::vector<unsigned char> converted = convert_from_float32(host, count, dtype);
    copy_from_host(device, tensor.data<void>(), converted.data(), converted.size());
  }
  return tensor;
}

std::vector<float> download(const Tensor& tensor) {
  const TensorView& view = tensor.view();
  const auto count = static_cast<std::size_t>(view.numel());
  std::vector<float> out(count);
  if (view.dtype == DType::kFloat32) {
    copy_to_host(view.device, out.data(), view.data, view.nbytes());
  } else {
    std::vector<unsigned char> raw(view.nbytes());
    copy_to_host(view.device, raw.data(), view.data, raw.size());
    convert_to_float32(raw.data(), count, view.dtype, out.data());
  }
  return out;
}

}  // namespace lighthouse::cli
