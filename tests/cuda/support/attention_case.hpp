// Test problems for dense causal attention and a float64 CPU reference to judge them by.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "cuda/attention.hpp"

namespace lighthouse::testing {

// Memory orders of a logical [b, h, s, d] tensor.
enum class Layout {
  kBHSD,        // contiguous [b, h, s, d]
  kBSHD,        // contiguous [b, s, h, d] (the Lighthouse API layout), seen as [b, h, s, d]
  kBHDS,        // d not innermost: a non-unit stride on d (fp32 path only)
  kBSHDPadded,  // [b, s, h, d] with 8 unused elements after every row of h*d
};

std::array<std::int64_t, 4> layout_strides(Layout layout, std::int64_t b, std::int64_t h,
                                           std::int64_t s, std::int64_t d);
// Elements a buffer needs for a [b, h, s, d] tensor with these strides.
std::int64_t buffer_elements(const cuda::SdpaDesc& desc, const std::array<std::int64_t, 4>& st);

// One problem: inputs as float32 buffers in their layouts, holding values exactly
// representable in desc.dtype (so the float32 copy and the bf16/fp16 copy are the same data).
struct AttentionCase {
  cuda::SdpaDesc desc;
  std::vector<float> q, k, v, dout;  // dout has o's layout
};

struct CaseLayouts {
  Layout q = Layout::kBSHD, k = Layout::kBSHD, v = Layout::kBSHD, o = Layout::kBSHD;
};

AttentionCase make_case(std::int64_t b, std::int64_t h, std::int64_t s, std::int64_t d, DType dtype,
                        CaseLayouts layouts, std::uint32_t seed);

// bf16/fp16 storage <-> float, round to nearest even.
std::vector<std::uint16_t> to_half_bits(const std::vector<float>& values, DType dtype);
std::vector<float> from_half_bits(const std::vector<std::uint16_t>& bits, DType dtype);

// Forward and backward in float64: o and the gradients are contiguous [b, h, s, d], stats
// [b, h, s]. The backward recomputes the softmax itself, so it depends on nothing but the inputs.
struct CpuAttention {
  std::vector<double> o, stats, dq, dk, dv;
};
CpuAttention cpu_attention(const AttentionCase& problem);

struct Deviation {
  double max_abs_err = 0;  // max |x - ref|
  double max_abs_ref = 0;  // max |ref|
  // Error relative to the tensor's scale (at least 1, so near-zero tensors are judged absolutely).
  double normalized() const { return max_abs_err / (max_abs_ref > 1 ? max_abs_ref : 1); }
};
// x: a strided [b, h, s, d] buffer; ref: contiguous [b, h, s, d].
Deviation deviation(const cuda::SdpaDesc& desc, const std::vector<float>& x,
                    const std::array<std::int64_t, 4>& x_stride, const std::vector<double>& ref);
// Same, for two strided float buffers (e.g. cuDNN against the fp32 reference kernel).
Deviation deviation(const cuda::SdpaDesc& desc, const std::vector<float>& x,
                    const std::vector<float>& ref, const std::array<std::int64_t, 4>& stride);
// Flat comparison (stats).
Deviation deviation(const std::vector<float>& x, const std::vector<double>& ref);

}  // namespace lighthouse::testing
