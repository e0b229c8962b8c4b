// What the CUDA backend accepts beyond the core's validation: the plans and dtypes its kernels
// are written for, the layouts they read, and the opt-in finiteness scan (Options::check_finite).
// Every refusal is an InvalidArgument naming the parameter, its value and the rule.
#pragma once

#include <cuda_runtime.h>

#include "lighthouse/attention.hpp"
#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse::cuda {

// Head dim and dtype (cuDNN's limits for bf16/fp16, the reference kernels' for fp32), levels,
// pool and pyramid size.
void check_supported(const Plan& plan, DType dtype);

// The stage kernels access rows as 16-byte vectors: a 16-byte aligned base, a unit stride on D
// and the other strides multiples of 16 bytes.
void check_layout(const char* name, const TensorView& t);

// NaN/Inf in `t` (a counting kernel on `stream`, then one host sync).
void check_finite(const char* name, const TensorView& t, cudaStream_t stream);

// What a forward checks before it launches anything: the plan and dtype, the four layouts and,
// with options.check_finite, q, k and v.
void check_forward_inputs(const Plan& plan, const TensorView& q, const TensorView& k,
                          const TensorView& v, const TensorView& out, const Options& options);
// The same for a backward: the four layouts (dout, dq, dk, dv).
void check_backward_layouts(const TensorView& dout, const TensorView& dq, const TensorView& dk,
                            const TensorView& dv);

}  // namespace lighthouse::cuda
