// A sequence with S >= 65536 on the GPU: grid dimensions, 64-bit offsets, a 65536-entry tile.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "support/library_runs.hpp"
#include "support/require_gpu.hpp"

namespace lighthouse::testing {
namespace {

namespace lh = lighthouse;

// S >= 65536 (grid dimensions, 64-bit offsets, a 65536-entry tile): indices against the float64
// reference's selection, sampled outputs against its output at those tokens, finite gradients.
TEST(CudaBackend, LongSequence) {
  LIGHTHOUSE_REQUIRE_GPU();
  const Case c{{1, 131072, 2, 64}, 2, 2, 128};
  const Shape& s = c.shape;
  const lh::Plan plan = lh::make_plan(config_of(c), s.B, s.N, s.H, s.D);
  ASSERT_GE(plan.S, 65536);
  Inputs in = random_inputs(s, 2024);
  round_inputs(in, lh::DType::kBFloat16);
  const Outputs gpu = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c));
  const std::vector<std::int32_t> want = reference_indices(in, config_of(c));
  ASSERT_EQ(gpu.indices, want) << "first difference " << first_difference(gpu.indices, want);

  const std::vector<std::int64_t> tokens = {0, 1, 777, s.N / 2 + 1, s.N - 2, s.N - 1};
  const std::vector<double> sampled_want =
      lhtest::attend_tokens(config_of(c), s, std::vector<double>(in.q.begin(), in.q.end()),
                            std::vector<double>(in.k.begin(), in.k.end()),
                            std::vector<double>(in.v.begin(), in.v.end()), want, tokens);
  std::vector<double> sampled_got;  // [tokens, H, D], as attend_tokens lays them out (B == 1)
  for (std::int64_t t : tokens) {
    const auto first = gpu.out.begin() + t * s.H * s.D;
    sampled_got.insert(sampled_got.end(), first, first + s.H * s.D);
  }
  EXPECT_LT(lhtest::rel_l2(sampled_got, sampled_want), 2e-2);
  for (const auto* g : {&gpu.dq, &gpu.dk, &gpu.dv}) {
    EXPECT_TRUE(std::all_of(g->begin(), g->end(), [](float f) { return std::isfinite(f); }));
  }
}

}  // namespace
}  // namespace lighthouse::testing
