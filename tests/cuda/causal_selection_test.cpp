// selection = causal (docs/SPEC.md, "Causal selection") on the GPU: the CPU backend's indices for
// every size class of the kernel, outputs and gradients to float32 rounding, ties, and bf16
// inputs.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "support/library_runs.hpp"
#include "support/require_gpu.hpp"

namespace lighthouse::testing {
namespace {

namespace lh = lighthouse;

// Candidate lists of every size class the kernel handles differently: small ones, a coarsest
// level of 2048 (staged keys), of 12288 (beyond the 8192 staged keys: read from L2) and of 32768
// (two rounds of 16384 eligibility bits), p = 2..16, 2..4 levels, several tiles, B, H > 1.
const std::vector<Case>& causal_cases() {
  static const std::vector<Case> cases = {
      {{2, 1024, 3, 64}, 2, 2, 256},  {{2, 4096, 2, 128}, 3, 4, 128},
      {{1, 4096, 2, 64}, 4, 2, 256},  {{2, 2048, 2, 128}, 2, 8, 128},
      {{1, 8192, 2, 64}, 3, 8, 128},  {{1, 32768, 2, 64}, 3, 16, 128},
      {{2, 2048, 3, 20}, 2, 4, 128},  {{1, 16384, 1, 32}, 2, 8, 128},
      {{1, 24576, 1, 16}, 2, 2, 128}, {{1, 65536, 1, 8}, 2, 2, 128},
  };
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
  const Outputs gpu =
      run(in, lh::Device::kCUDA, lh::DType::kFloat32, causal_of(c), {.backward = !big});
  const Outputs cpu =
      run(in, lh::Device::kCPU, lh::DType::kFloat32, causal_of(c), {.backward = !big});
  ASSERT_EQ(gpu.indices, cpu.indices)
      << "first difference " << first_difference(gpu.indices, cpu.indices);
  if (!big) expect_close(gpu, cpu, 1e-5, name_of(c));
  // The rule really differs from the original's (the comparison above is not vacuous).
  const Outputs orig =
      run(in, lh::Device::kCUDA, lh::DType::kFloat32, config_of(c), {.backward = false});
  EXPECT_NE(orig.indices, gpu.indices);

  // cuDNN's bf16 attention takes head_dim multiples of 8 only: D = 20 checks fp32 alone.
  if (c.shape.D % 8 != 0) return;
  Inputs rounded = in;
  round_inputs(rounded, lh::DType::kBFloat16);
  const Outputs gpu16 =
      run(rounded, lh::Device::kCUDA, lh::DType::kBFloat16, causal_of(c), {.backward = false});
  const Outputs cpu32 =
      run(rounded, lh::Device::kCPU, lh::DType::kFloat32, causal_of(c), {.backward = false});
  EXPECT_EQ(gpu16.indices, cpu32.indices)
      << "bf16, first difference " << first_difference(gpu16.indices, cpu32.indices);
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
    Inputs in = random_inputs(c.shape, 98);
    std::mt19937 gen(17 + mode);
    std::uniform_int_distribution<int> pick(-1, 1);
    for (auto* x : {&in.q, &in.k}) {
      for (float& f : *x) f = mode == 0 ? static_cast<float>(pick(gen)) : (f < 0 ? -1.f : 1.f);
    }
    const Outputs gpu =
        run(in, lh::Device::kCUDA, lh::DType::kFloat32, causal_of(c), {.backward = false});
    const Outputs cpu =
        run(in, lh::Device::kCPU, lh::DType::kFloat32, causal_of(c), {.backward = false});
    EXPECT_EQ(gpu.indices, cpu.indices)
        << "mode " << mode << ", first difference " << first_difference(gpu.indices, cpu.indices);
  }
}

}  // namespace
}  // namespace lighthouse::testing
