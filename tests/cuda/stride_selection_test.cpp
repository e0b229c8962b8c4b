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

// The causal tests' size classes (coarsest levels of 128 to 32768 candidates, p = 2..16, 2..4
// levels, several tiles), plus candidate counts that 128 does not divide (C = 160, 192, 1000).
const std::vector<Case>& stride_cases() {
  static const std::vector<Case> cases = {
      {{2, 1024, 3, 64}, 2, 2, 256}, {{2, 4096, 2, 128}, 3, 4, 128},
      {{1, 4096, 2, 64}, 4, 2, 256}, {{2, 2048, 2, 128}, 2, 8, 128},
      {{1, 8192, 2, 64}, 3, 8, 128}, {{1, 32768, 2, 64}, 3, 16, 128},
      {{2, 2048, 3, 20}, 2, 4, 128}, {{1, 16384, 1, 32}, 2, 8, 128},
      {{1, 65536, 1, 8}, 2, 2, 128}, {{3, 640, 1, 16}, 2, 4, 128},
      {{1, 1536, 2, 24}, 4, 2, 128}, {{1, 8000, 2, 64}, 2, 8, 128},
  };
  return cases;
}

class CudaStrideSelection : public ::testing::TestWithParam<Case> {};

TEST_P(CudaStrideSelection, MatchesCpuAndIgnoresTheScores) {
  LIGHTHOUSE_REQUIRE_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend in this build";
  const Case& c = GetParam();
  const bool big = c.shape.N >= 16384;  // the CPU attention would dominate: indices only
  const Inputs in = random_inputs(c.shape, 2025);
  const Outputs gpu =
      run(in, lh::Device::kCUDA, lh::DType::kFloat32, stride_of(c), {.backward = !big});
  const Outputs cpu =
      run(in, lh::Device::kCPU, lh::DType::kFloat32, stride_of(c), {.backward = !big});
  ASSERT_EQ(gpu.indices, cpu.indices)
      << "first difference " << first_difference(gpu.indices, cpu.indices);
  if (!big) expect_close(gpu, cpu, 1e-5, name_of(c));
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
  if (c.shape.D % 8 != 0) return;  // cuDNN's bf16 attention takes head_dim multiples of 8 only
  Inputs rounded = in;
  round_inputs(rounded, lh::DType::kBFloat16);
  const Outputs gpu16 =
      run(rounded, lh::Device::kCUDA, lh::DType::kBFloat16, stride_of(c), {.backward = false});
  EXPECT_EQ(gpu16.indices, cpu.indices)
      << "bf16, first difference " << first_difference(gpu16.indices, cpu.indices);
}

INSTANTIATE_TEST_SUITE_P(Configs, CudaStrideSelection, ::testing::ValuesIn(stride_cases()),
                         [](const auto& info) { return name_of(info.param); });

}  // namespace
}  // namespace lighthouse::testing
