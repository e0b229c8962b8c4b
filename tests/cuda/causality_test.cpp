// Causality on the GPU as the spec states it for the original selection: changing v_t, or q_t
// and k_t without changing their norms, leaves every output before t bitwise unchanged.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "support/library_runs.hpp"
#include "support/require_gpu.hpp"

namespace lighthouse::testing {
namespace {

namespace lh = lighthouse;

class CudaCausality : public ::testing::TestWithParam<lh::DType> {};

// Changing v_t, or q_t/k_t without changing their norms, leaves every output before t
// bitwise unchanged.
TEST_P(CudaCausality, EarlierOutputsUnchanged) {
  LIGHTHOUSE_REQUIRE_GPU();
  const lh::DType dtype = GetParam();
  const Case c{{1, 4096, 2, 64}, 3, 4, 128};
  const Shape& s = c.shape;
  Inputs in = random_inputs(s, 555);
  round_inputs(in, dtype);
  const Outputs base = run(in, lh::Device::kCUDA, dtype, config_of(c), {.backward = false});
  const std::int64_t t0 = 2500;
  const std::size_t prefix = static_cast<std::size_t>(t0 * s.H * s.D);  // tokens < t0, B == 1

  Inputs changed_v = in;
  for (std::int64_t i = 0; i < s.H * s.D; ++i) changed_v.v[prefix + i] += 1.0f;
  round_inputs(changed_v, dtype);
  const Outputs after_v =
      run(changed_v, lh::Device::kCUDA, dtype, config_of(c), {.backward = false});
  EXPECT_EQ(after_v.indices, base.indices);
  EXPECT_EQ(0, std::memcmp(after_v.out.data(), base.out.data(), prefix * sizeof(float)))
      << "changing v at token " << t0 << " changed an earlier output";
  EXPECT_FALSE(bits_equal(after_v.out, base.out)) << "the change reached no output at all";

  Inputs flipped = in;
  for (std::int64_t h = 0; h < s.H; ++h) {
    flipped.q[prefix + h * s.D + 3] = -flipped.q[prefix + h * s.D + 3];
    flipped.k[prefix + h * s.D + 5] = -flipped.k[prefix + h * s.D + 5];
  }
  const Outputs after_qk =
      run(flipped, lh::Device::kCUDA, dtype, config_of(c), {.backward = false});
  EXPECT_EQ(after_qk.indices, base.indices) << "norms are unchanged, so is the selection";
  EXPECT_EQ(0, std::memcmp(after_qk.out.data(), base.out.data(), prefix * sizeof(float)))
      << "flipping a sign in q/k at token " << t0 << " changed an earlier output";
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaCausality,
                         ::testing::Values(lh::DType::kBFloat16, lh::DType::kFloat32),
                         [](const auto& info) { return std::string(lh::dtype_name(info.param)); });

}  // namespace
}  // namespace lighthouse::testing
