#include "support/attention_case.hpp"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

#include "support/reference.hpp"

namespace lighthouse::testing {
namespace {

std::int64_t offset(const std::array<std::int64_t, 4>& st, std::int64_t b, std::int64_t h,
                    std::int64_t i, std::int64_t c) {
  return b * st[0] + h * st[1] + i * st[2] + c * st[3];
}

float round_to(DType dtype, float x) {
  switch (dtype) {
    case DType::kBFloat16:
      return __bfloat162float(__float2bfloat16_rn(x));
    case DType::kFloat16:
      return __half2float(__float2half_rn(x));
    default:
      return x;
  }
}

std::vector<float> random_tensor(const cuda::SdpaDesc& desc, const std::array<std::int64_t, 4>& st,
                                 float amplitude, std::mt19937& rng) {
  // Unused (padding) elements get NaN: a kernel that reads them poisons its output.
  std::vector<float> values(buffer_elements(desc, st), std::nanf(""));
  std::uniform_real_distribution<float> dist(-amplitude, amplitude);
  for (std::int64_t b = 0; b < desc.b; ++b)
    for (std::int64_t h = 0; h < desc.h; ++h)
      for (std::int64_t i = 0; i < desc.s; ++i)
        for (std::int64_t c = 0; c < desc.d; ++c)
          values[offset(st, b, h, i, c)] = round_to(desc.dtype, dist(rng));
  return values;
}

}  // namespace

std::array<std::int64_t, 4> layout_strides(Layout layout, std::int64_t b, std::int64_t h,
                                           std::int64_t s, std::int64_t d) {
  (void)b;
  switch (layout) {
    case Layout::kBHSD:
      return {h * s * d, s * d, d, 1};
    case Layout::kBSHD:
      return {s * h * d, d, h * d, 1};
    case Layout::kBHDS:
      return {h * d * s, d * s, 1, s};
    case Layout::kBSHDPadded:
      return {s * (h * d + 8), d, h * d + 8, 1};
  }
  throw std::logic_error("unknown layout");
}

std::int64_t buffer_elements(const cuda::SdpaDesc& desc, const std::array<std::int64_t, 4>& st) {
  return 1 + (desc.b - 1) * st[0] + (desc.h - 1) * st[1] + (desc.s - 1) * st[2] +
         (desc.d - 1) * st[3];
}

AttentionCase make_case(std::int64_t b, std::int64_t h, std::int64_t s, std::int64_t d, DType dtype,
                        CaseLayouts layouts, std::uint32_t seed) {
  AttentionCase problem;
  cuda::SdpaDesc& desc = problem.desc;
  desc.b = b;
  desc.h = h;
  desc.s = s;
  desc.d = d;
  desc.dtype = dtype;
  desc.scale = 1.0 / std::sqrt(static_cast<double>(d));
  desc.q_stride = layout_strides(layouts.q, b, h, s, d);
  desc.k_stride = layout_strides(layouts.k, b, h, s, d);
  desc.v_stride = layout_strides(layouts.v, b, h, s, d);
  desc.o_stride = layout_strides(layouts.o, b, h, s, d);
  std::mt19937 rng(seed);
  // q and k span [-2, 2] so that softmax rows are peaked, not near uniform: a wrong mask or
  // scale then moves the output by O(1).
  problem.q = random_tensor(desc, desc.q_stride, 2.f, rng);
  problem.k = random_tensor(desc, desc.k_stride, 2.f, rng);
  problem.v = random_tensor(desc, desc.v_stride, 1.f, rng);
  problem.dout = random_tensor(desc, desc.o_stride, 1.f, rng);
  return problem;
}

std::vector<std::uint16_t> to_half_bits(const std::vector<float>& values, DType dtype) {
  std::vector<std::uint16_t> bits(values.size());
  for (std::size_t n = 0; n < values.size(); ++n) {
    if (dtype == DType::kBFloat16) {
      const __nv_bfloat16_raw raw = __float2bfloat16_rn(values[n]);
      bits[n] = raw.x;
    } else {
      const __half_raw raw = __float2half_rn(values[n]);
      bits[n] = raw.x;
    }
  }
  return bits;
}

std::vector<float> from_half_bits(const std::vector<std::uint16_t>& bits, DType dtype) {
  std::vector<float> values(bits.size());
  for (std::size_t n = 0; n < bits.size(); ++n) {
    if (dtype == DType::kBFloat16) {
      __nv_bfloat16_raw raw;
      raw.x = bits[n];
      values[n] = __bfloat162float(__nv_bfloat16(raw));
    } else {
      __half_raw raw;
      raw.x = bits[n];
      values[n] = __half2float(__half(raw));
    }
  }
  return values;
}

CpuAttention cpu_attention(const AttentionCase& problem) {
  const cuda::SdpaDesc& desc = problem.desc;
  const std::int64_t B = desc.b, H = desc.h, S = desc.s, D = desc.d;
  CpuAttention out;
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t h = 0; h < H; ++h) {
      // The (b, h) rows of a strided buffer, [S, D] in float64.
      const auto rows = [&](const std::vector<float>& x, const std::array<std::int64_t, 4>& st) {
        std::vector<double> r(static_cast<std::size_t>(S * D));
        for (std::int64_t i = 0; i < S; ++i) {
          for (std::int64_t c = 0; c < D; ++c) r[i * D + c] = x[offset(st, b, h, i, c)];
        }
        return r;
      };
      const lhtest::DenseAttention a = lhtest::dense_causal_attention(
          rows(problem.q, desc.q_stride), rows(problem.k, desc.k_stride),
          rows(problem.v, desc.v_stride), rows(problem.dout, desc.o_stride), S, D, desc.scale);
      out.o.insert(out.o.end(), a.o.begin(), a.o.end());
      out.stats.insert(out.stats.end(), a.lse.begin(), a.lse.end());
      out.dq.insert(out.dq.end(), a.dq.begin(), a.dq.end());
      out.dk.insert(out.dk.end(), a.dk.begin(), a.dk.end());
      out.dv.insert(out.dv.end(), a.dv.begin(), a.dv.end());
    }
  }
  return out;
}

Deviation deviation(const cuda::SdpaDesc& desc, const std::vector<float>& x,
                    const std::array<std::int64_t, 4>& x_stride, const std::vector<double>& ref) {
  Deviation dev;
  for (std::int64_t b = 0; b < desc.b; ++b)
    for (std::int64_t h = 0; h < desc.h; ++h)
      for (std::int64_t i = 0; i < desc.s; ++i)
        for (std::int64_t c = 0; c < desc.d; ++c) {
          const double r = ref[((b * desc.h + h) * desc.s + i) * desc.d + c];
          const double value = x[offset(x_stride, b, h, i, c)];
          // NaN compares false everywhere; make it the largest possible error instead.
          const double err = std::isnan(value) ? INFINITY : std::abs(value - r);
          dev.max_abs_err = std::max(dev.max_abs_err, err);
          dev.max_abs_ref = std::max(dev.max_abs_ref, std::abs(r));
        }
  return dev;
}

Deviation deviation(const cuda::SdpaDesc& desc, const std::vector<float>& x,
                    const std::vector<float>& ref, const std::array<std::int64_t, 4>& stride) {
  std::vector<double> ref_bhsd(desc.b * desc.h * desc.s * desc.d);
  for (std::int64_t b = 0; b < desc.b; ++b)
    for (std::int64_t h = 0; h < desc.h; ++h)
      for (std::int64_t i = 0; i < desc.s; ++i)
        for (std::int64_t c = 0; c < desc.d; ++c)
          ref_bhsd[((b * desc.h + h) * desc.s + i) * desc.d + c] = ref[offset(stride, b, h, i, c)];
  return deviation(desc, x, stride, ref_bhsd);
}

Deviation deviation(const std::vector<float>& x, const std::vector<double>& ref) {
  Deviation dev;
  for (std::size_t n = 0; n < ref.size(); ++n) {
    const double err = std::isnan(x[n]) ? INFINITY : std::abs(x[n] - ref[n]);
    dev.max_abs_err = std::max(dev.max_abs_err, err);
    dev.max_abs_ref = std::max(dev.max_abs_ref, std::abs(ref[n]));
  }
  return dev;
}

}  // namespace lighthouse::testing
