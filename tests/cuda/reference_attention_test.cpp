// The float32 path of sdpa_forward/backward (the reference kernels) against float64 on the CPU,
// over head dims that take one or several channels per thread and layouts with any strides.
#include <gtest/gtest.h>

#include <cstdio>
#include <ostream>
#include <string>

#include "support/attention_case.hpp"
#include "support/require_gpu.hpp"
#include "support/sdpa_runs.hpp"

namespace lighthouse::testing {
namespace {

struct ReferenceParam {
  std::int64_t b, h, s, d;
  CaseLayouts layouts;
  const char* name;
};

void PrintTo(const ReferenceParam& param, std::ostream* out) {
  *out << param.name;
}

class ReferenceAttentionTest : public GpuTest,
                               public ::testing::WithParamInterface<ReferenceParam> {};

TEST_P(ReferenceAttentionTest, MatchesFloat64Cpu) {
  const ReferenceParam param = GetParam();
  const AttentionCase problem =
      make_case(param.b, param.h, param.s, param.d, DType::kFloat32, param.layouts, 5);
  const cuda::SdpaDesc& desc = problem.desc;
  const CpuAttention cpu = cpu_attention(problem);
  const GpuAttention gpu = run_sdpa(problem);
  const struct {
    const char* what;
    Deviation dev;
    double tol;
  } checks[] = {
      {"o", deviation(desc, gpu.o, desc.o_stride, cpu.o), 2e-5},
      {"stats", deviation(gpu.stats, cpu.stats), 2e-5},
      {"dq", deviation(desc, gpu.dq, desc.q_stride, cpu.dq), 5e-5},
      {"dk", deviation(desc, gpu.dk, desc.k_stride, cpu.dk), 5e-5},
      {"dv", deviation(desc, gpu.dv, desc.v_stride, cpu.dv), 5e-5},
  };
  for (const auto& check : checks) {
    EXPECT_LT(check.dev.normalized(), check.tol)
        << check.what << ": max |err| " << check.dev.max_abs_err << ", max |ref| "
        << check.dev.max_abs_ref;
    std::printf("  %-6s normalised deviation %.3e (tol %.1e)\n", check.what, check.dev.normalized(),
                check.tol);
  }
}

constexpr CaseLayouts kMixed{Layout::kBSHD, Layout::kBHSD, Layout::kBHDS, Layout::kBSHDPadded};

INSTANTIATE_TEST_SUITE_P(
    Fp32, ReferenceAttentionTest,
    ::testing::Values(ReferenceParam{1, 1, 1, 64, {}, "single_row"},
                      ReferenceParam{2, 3, 129, 64, {}, "tile_plus_one"},
                      ReferenceParam{2, 2, 300, 40, kMixed, "mixed_layouts_d40"},
                      ReferenceParam{1, 2, 260, 200, kMixed, "two_channels_per_thread_d200"},
                      ReferenceParam{1, 1, 140, 512, {}, "max_head_dim_d512"},
                      ReferenceParam{1, 1, 1100, 32, {}, "longer_s1100"}),
    [](const ::testing::TestParamInfo<ReferenceParam>& info) {
      return std::string(info.param.name);
    });

}  // namespace
}  // namespace lighthouse::testing
