// The CPU and CUDA kernels of the ops (library.cpp has their schemas): the library does the work,
// on the tensors' device, with the context in a uint8 tensor that autograd saves for backward.
#include <ATen/ops/empty.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>
#include <vector>

#include "convert.hpp"

namespace lighthouse::torch_op {

namespace {

std::tuple<at::Tensor, at::Tensor> forward_kernel(const at::Tensor& q_in, const at::Tensor& k_in,
                                                  const at::Tensor& v_in, std::int64_t levels,
                                                  std::int64_t pool, std::int64_t topk,
                                                  std::optional<double> scale,
                                                  c10::string_view selection,
                                                  c10::string_view scorer, std::int64_t dilation) {
  return translate_errors([&] {
    const c10::OptionalDeviceGuard guard(q_in.device());
    const Config config = make_config(levels, pool, topk, scale, selection, scorer, dilation);
    const at::Tensor q = readable(q_in), k = readable(k_in), v = readable(v_in);
    const TensorView qv = view_of("q", q), kv = view_of("k", k), vv = view_of("v", v);
    at::Tensor out = new_like_bnhd(q);
    // The plan is made again inside forward(); here it only sizes the context (and validates
    // the shapes before anything is allocated).
    const Plan plan =
        make_plan(config, qv.shape[0], qv.shape[1], qv.shape[2], qv.shape[3], kv.shape[2]);
    at::Tensor ctx = at::empty({static_cast<std::int64_t>(context_bytes(plan, qv.dtype))},
                               q.options().dtype(at::kByte));
    lighthouse::forward(config, qv, kv, vv, view_of("out", out),
                        ContextBuffer{ctx.data_ptr(), static_cast<std::size_t>(ctx.numel())},
                        options_for(q));
    return std::make_tuple(out, ctx);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_kernel(
    const at::Tensor& dout_in, const at::Tensor& ctx_in, std::int64_t levels, std::int64_t pool,
    std::int64_t topk, std::optional<double> scale, c10::string_view selection,
    c10::string_view scorer, std::int64_t dilation, std::int64_t kv_heads) {
  return translate_errors([&] {
    const c10::OptionalDeviceGuard guard(dout_in.device());
    const Config config = make_config(levels, pool, topk, scale, selection, scorer, dilation);
    const at::Tensor dout = readable(dout_in);
    const at::Tensor ctx = backward_context(ctx_in, dout, "attention_forward");
    auto [dq, dk, dv] = new_gradients(dout, kv_heads);
    lighthouse::backward(config,
                         ContextBuffer{ctx.data_ptr(), static_cast<std::size_t>(ctx.numel())},
                         view_of("dout", dout), view_of("dq", dq), view_of("dk", dk),
                         view_of("dv", dv), options_for(dout));
    return std::make_tuple(dq, dk, dv);
  });
}

// The library through its own Context (no context tensor): the reference for tests and the
// benchmark's "C++ backend" at the same shapes.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> library_kernel(
    const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
    const at::Tensor& dout_in, std::int64_t levels, std::int64_t pool, std::int64_t topk,
    std::optional<double> scale, c10::string_view selection, c10::string_view scorer,
    std::int64_t dilation) {
  return translate_errors([&] {
    const c10::OptionalDeviceGuard guard(q_in.device());
    const Config config = make_config(levels, pool, topk, scale, selection, scorer, dilation);
    const at::Tensor q = readable(q_in), k = readable(k_in), v = readable(v_in),
                     dout = readable(dout_in);
    at::Tensor out = new_like_bnhd(q), dq = new_like_bnhd(q), dk = new_like_bnhd(k),
               dv = new_like_bnhd(k);
    const Options options = options_for(q);
    Context context;
    lighthouse::forward(config, view_of("q", q), view_of("k", k), view_of("v", v),
                        view_of("out", out), context, options);
    lighthouse::backward(context, view_of("dout", dout), view_of("dq", dq), view_of("dk", dk),
                         view_of("dv", dv), options);
    return std::make_tuple(out, dq, dk, dv);
  });
}

void register_device_kernels(torch::Library& m) {
  m.impl("attention_forward", &forward_kernel);
  m.impl("attention_backward", &backward_kernel);
  m.impl("library_forward_backward", &library_kernel);
}

}  // namespace

}  // namespace lighthouse::torch_op

TORCH_LIBRARY_IMPL(lighthouse, CPU, m) {
  lighthouse::torch_op::register_device_kernels(m);
}

// Only where the library has its CUDA backend: otherwise PyTorch itself reports that the op has
// no CUDA kernel.
#ifdef LIGHTHOUSE_WITH_CUDA
TORCH_LIBRARY_IMPL(lighthouse, CUDA, m) {
  lighthouse::torch_op::register_device_kernels(m);
}
#endif
