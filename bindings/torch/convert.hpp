// What every kernel of the PyTorch op needs: at::Tensor -> lighthouse::TensorView, the op's
// integer arguments -> lighthouse::Config, Options from PyTorch's state, and lighthouse's errors
// -> PyTorch's (InvalidArgument -> ValueError in Python, Error -> RuntimeError).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "lighthouse/lighthouse.hpp"

namespace lighthouse::torch_op {

// Lighthouse's dtype for a PyTorch one; InvalidArgument naming `param` for any other.
DType dtype_from(const std::string& param, c10::ScalarType type);

// `selection`: "original", "causal" or "stride" (Config::selection); `scorer`: "norm" or "dilated"
// (Config::scorer) with `dilation` (Config::dilation).
Config make_config(std::int64_t levels, std::int64_t pool, std::int64_t topk,
                   std::optional<double> scale, std::string_view selection, std::string_view scorer,
                   std::int64_t dilation);

// A [B, N, H, D] view of `t` (which must stay alive). `name` appears in error messages.
TensorView view_of(const char* name, const at::Tensor& t);

// `t` itself when the library can read it in place, else a contiguous, aligned copy (a unit
// stride on D, and on CUDA 16-byte aligned rows with strides of whole 16-byte vectors).
at::Tensor readable(const at::Tensor& t);

// An uninitialised tensor of `t`'s sizes and options, contiguous ([B, N, H, D] row-major).
at::Tensor new_like_bnhd(const at::Tensor& t);

// The backward's context: `ctx_in` checked to be the uint8 rank-1 context that `producer` (the
// forward op's name, for the message) returned on `dout`'s device; itself when the library can
// use it in place, else an aligned contiguous copy (compiled graphs may hand over a view).
at::Tensor backward_context(const at::Tensor& ctx_in, const at::Tensor& dout, const char* producer);

// Uninitialised dq (dout's shape) and dk, dv with the forward's KV heads (kv_heads; 0: dout's).
std::tuple<at::Tensor, at::Tensor, at::Tensor> new_gradients(const at::Tensor& dout,
                                                             std::int64_t kv_heads);

// Options for a call on `device_of`'s device: PyTorch's thread count on the CPU, the current
// stream on CUDA; deterministic as torch.use_deterministic_algorithms says.
Options options_for(const at::Tensor& device_of);

// Runs `fn`, rethrowing lighthouse's exceptions as PyTorch's with the same message.
template <typename Fn>
decltype(auto) translate_errors(Fn&& fn) {
  try {
    return std::forward<Fn>(fn)();
  } catch (const InvalidArgument& e) {
    C10_THROW_ERROR(ValueError, e.what());
  } catch (const Error& e) {
    C10_THROW_ERROR(Error, e.what());
  }
}

}  // namespace lighthouse::torch_op
