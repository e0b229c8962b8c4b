#include "convert.hpp"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace lighthouse::torch_op {

namespace {

std::string sizes_of(const at::Tensor& t) {
  std::ostringstream text;
  text << t.sizes();
  return text.str();
}

}  // namespace

DType dtype_from(const std::string& param, c10::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kDouble:
      return DType::kFloat64;
    case at::kBFloat16:
      return DType::kBFloat16;
    case at::kHalf:
      return DType::kFloat16;
    default:
      throw InvalidArgument(param, c10::toString(type),
                            "Lighthouse takes float32 or float64 tensors on the CPU and "
                            "bfloat16, float16 or float32 tensors on CUDA");
  }
}

Config make_config(std::int64_t levels, std::int64_t pool, std::int64_t topk,
                   std::optional<double> scale, std::string_view selection, std::string_view scorer,
                   std::int64_t dilation) {
  // Values outside int range would wrap silently on conversion: reject them with the rule.
  auto narrow = [](const char* name, std::int64_t value) {
    if (value < INT32_MIN || value > INT32_MAX) {
      throw InvalidArgument(name, std::to_string(value), "must fit in a 32-bit int");
    }
    return static_cast<int>(value);
  };
  Config config;
  config.levels = narrow("levels", levels);
  config.pool = narrow("pool", pool);
  config.topk = narrow("topk", topk);
  config.scale = scale;
  config.selection = parse_selection(std::string(selection), "selection");
  config.scorer = parse_scorer(std::string(scorer), "scorer");
  config.dilation = narrow("dilation", dilation);
  validate(config);
  return config;
}

TensorView view_of(const char* name, const at::Tensor& t) {
  if (t.dim() != 4) {
    throw InvalidArgument(name, sizes_of(t), "must be a rank-4 [B, N, H, D] tensor");
  }
  TensorView v;
  v.data = t.data_ptr();
  v.dtype = dtype_from(std::string(name) + ".dtype", t.scalar_type());
  switch (t.device().type()) {
    case c10::DeviceType::CPU:
      v.device = Device::kCPU;
      break;
    case c10::DeviceType::CUDA:
      v.device = Device::kCUDA;
      break;
    default:
      throw InvalidArgument(std::string(name) + ".device", t.device().str(),
                            "Lighthouse runs on cpu and cuda tensors");
  }
  v.rank = 4;
  for (int d = 0; d < 4; ++d) {
    v.shape[d] = t.size(d);
    v.strides[d] = t.stride(d);
  }
  return v;
}

at::Tensor new_like_bnhd(const at::Tensor& t) {
  return at::empty(t.sizes(), t.options().memory_format(at::MemoryFormat::Contiguous));
}

at::Tensor backward_context(const at::Tensor& ctx_in, const at::Tensor& dout,
                            const char* producer) {
  if (ctx_in.scalar_type() != at::kByte || ctx_in.dim() != 1 || ctx_in.device() != dout.device()) {
    throw InvalidArgument(
        "ctx", ctx_in.toString() + " on " + ctx_in.device().str(),
        std::string("must be the uint8 context of ") + producer + ", on dout's device");
  }
  const bool aligned = ctx_in.is_contiguous() &&
                       reinterpret_cast<std::uintptr_t>(ctx_in.data_ptr()) % kContextAlignment == 0;
  return aligned ? ctx_in : ctx_in.clone(at::MemoryFormat::Contiguous);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> new_gradients(const at::Tensor& dout,
                                                             std::int64_t kv_heads) {
  std::vector<std::int64_t> kv_sizes = dout.sizes().vec();
  if (kv_heads != 0 && kv_sizes.size() == 4) kv_sizes[2] = kv_heads;
  const auto contiguous = dout.options().memory_format(at::MemoryFormat::Contiguous);
  return {new_like_bnhd(dout), at::empty(kv_sizes, contiguous), at::empty(kv_sizes, contiguous)};
}

at::Tensor readable(const at::Tensor& t) {
  if (t.dim() != 4 || t.numel() == 0) return t;  // rejected with a message by view_of / the core
  bool ok = t.stride(3) == 1;
  if (ok && t.is_cuda()) {
    const std::int64_t vec = 16 / static_cast<std::int64_t>(t.element_size());
    ok = reinterpret_cast<std::uintptr_t>(t.data_ptr()) % 16 == 0;
    for (int d = 0; d < 3 && ok; ++d) ok = t.size(d) == 1 || t.stride(d) % vec == 0;
  }
  return ok ? t : t.clone(at::MemoryFormat::Contiguous);
}

Options options_for(const at::Tensor& device_of) {
  Options options;
  options.deterministic = at::globalContext().deterministicAlgorithms();
  if (device_of.is_cuda()) {
    const c10::impl::VirtualGuardImpl impl(c10::DeviceType::CUDA);
    options.stream = impl.getStream(device_of.device()).native_handle();
  } else {
    options.threads = at::get_num_threads();
  }
  return options;
}

}  // namespace lighthouse::torch_op
