// selection = stride (docs/SPEC.md, "Stride selection"), the causal rule's content-free control,
// on the GPU: the CPU backend's indices for every size class of the selection kernel, outputs and
// gradients to float32 rounding, the same layout whatever q and k are (bf16 included), and a
// layout unlike the causal rule's (so the comparison is not vacuous).
#include <gtest/gtest.h>

#include <vector>

#include "support/library_runs.hpp"
#include "support/require_gpu.hpp"

namespace lighthouse::testing {
namespace {

namespace lh = lighthouse;

Config stride_of(const Case& c) {
  Config cfg = config_of(c);
  cfg.selection = lh::Selection::kStride;
  return cfg;
}

// The causal tests' size classes plus candidate counts that 128 does not divide (C = 160, 192,
// 1000).
std::vector<Case> stride_cases() {
  std::vector<Case> cases = selection_size_classes();
  cases.insert(
      cases.end(),
      {{{3, 640, 1, 16}, 2, 4, 128}, {{1, 1536, 2, 24}, 4, 2, 128}, {{1, 8000, 2, 64}, 2, 8, 128}});
  return cases;
}

class CudaStrideSelection : public ::testing::TestWithParam<Case> {};

TEST_P(CudaStrideSelection, MatchesCpuAndIgnoresTheScores) {
  LIGHTHOUSE_REQUIRE_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend in this build";
  const Case& c = GetParam();
  const bool big = c.shape.N >= 16384;  // the CPU attention would dominate: indices only
  const Inputs in = random_inputs(c.shape, 2025);
  const Outputs gpu = expect_gpu_matches_cpu(in, stride_of(c), !big, name_of(c));
  const Outputs causal =
      run(in, lh::Device::kCUDA, lh::DType::kFloat32, causal_of(c), {.backward = false});
  EXPECT_NE(causal.indices, gpu.indices);

  // Other inputs, and bf16 ones, select the same layout: no score is read.
  Inputs other = random_inputs(c.shape, 77);
  for (float& x : other.q) x *= 100.f;
  const Outputs moved =
      run(other, lh::Device::kCUDA, lh::DType::kFloat32, stride_of(c), {.backward = false});
  EXPECT_EQ(moved.indices, gpu.indices)
      << "first difference " << first_difference(moved.indices, gpu.indices);
  if (c.shape.D % 8 == 0) expect_bf16_selects_like_cpu(in, stride_of(c));
}

INSTANTIATE_TEST_SUITE_P(Configs, CudaStrideSelection, ::testing::ValuesIn(stride_cases()),
                         [](const auto& info) { return name_of(info.param); });

}  // namespace
}  // namespace lighthouse::testing
