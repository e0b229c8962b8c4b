// selection = causal (docs/SPEC.md, "Causal selection") on the GPU: the CPU backend's indices for
// every size class of the kernel, outputs and gradients to float32 rounding, ties, and bf16
// inputs.
#include <gtest/gtest.h>

#include <vector>

#include "support/library_runs.hpp"
#include "support/require_gpu.hpp"

namespace lighthouse::testing {
namespace {

namespace lh = lighthouse;

// The shared size classes plus a coarsest level of 12288 (beyond the 8192 staged keys: read from
// L2).
std::vector<Case> causal_cases() {
  std::vector<Case> cases = selection_size_classes();
  cases.push_back({{1, 24576, 1, 16}, 2, 2, 128});
  return cases;
}

class CudaCausalSelection : public ::testing::TestWithParam<Case> {};

// fp32: the same indices as the CPU backend (comparisons only, on scores both compute alike),
// outputs and gradients to float32 rounding; bf16 inputs select as the CPU does on the same
// rounded values.
TEST_P(CudaCausalSelection, MatchesCpu) {
  LIGHTHOUSE_REQUIRE_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend in this build";
  const Case& c = GetParam();
  const bool big = c.shape.N >= 16384;  // the CPU attention would dominate: indices only
  const Inputs in = random_inputs(c.shape, 2024);
  const Outputs gpu = expect_gpu_matches_cpu(in, causal_of(c), !big, name_of(c));
  // The rule really differs from the original's (the comparison above is not vacuous).
  const Outputs orig =
      run(in, lh::Device::kCUDA, lh::DType::kFloat32, config_of(c), {.backward = false});
  EXPECT_NE(orig.indices, gpu.indices);
  // cuDNN's bf16 attention takes head_dim multiples of 8 only: D = 20 checks fp32 alone.
  if (c.shape.D % 8 == 0) expect_bf16_selects_like_cpu(in, causal_of(c));
}

INSTANTIATE_TEST_SUITE_P(Configs, CudaCausalSelection, ::testing::ValuesIn(causal_cases()),
                         [](const auto& info) { return name_of(info.param); });

// Equal scores everywhere (eligibility is a strict comparison, so the forced tail decides) and
// few distinct ones.
TEST(CudaCausalSelection, TiedScoresSelectLikeCpu) {
  LIGHTHOUSE_REQUIRE_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend in this build";
  const Case c{{2, 4096, 2, 64}, 3, 4, 128};
  for (int mode = 0; mode < 2; ++mode) {
    const Inputs in = tied_inputs(c.shape, mode, 98, 17 + mode);
    expect_gpu_matches_cpu(in, causal_of(c), false, "mode " + std::to_string(mode));
  }
}

}  // namespace
}  // namespace lighthouse::testing
