// Strict causality on the GPU (issue 11; docs/SPEC.md, "Causal selection"): nothing after t
// reaches the outputs at positions <= t or, with dout zero after t, the gradients, under
// selection = causal (and its content-free control, stride); the same check catches the original
// selection's leak.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "support/library_runs.hpp"
#include "support/require_gpu.hpp"

namespace lighthouse::testing {
namespace {

namespace lh = lighthouse;

// Strict causality on the GPU (issue 11): q, k and v after t redrawn with norms over six orders
// of magnitude leave the outputs at positions <= t and, with dout zero after t, all of dq, dk,
// dv bitwise unchanged under selection = causal; the same check catches the original selection.
struct LeakCase {
  lh::DType dtype;
  lh::Selection selection;
};

class CudaStrictCausality : public ::testing::TestWithParam<LeakCase> {};

TEST_P(CudaStrictCausality, FutureChanges) {
  LIGHTHOUSE_REQUIRE_GPU();
  const LeakCase lc = GetParam();
  const Case c{{2, 4096, 2, 64}, 3, 4, 128};
  const Shape& s = c.shape;
  lh::Config cfg = config_of(c);
  cfg.selection = lc.selection;
  const Inputs in = random_inputs(s, 31);
  auto row = [&](std::int64_t b, std::int64_t n) {
    return static_cast<std::size_t>((b * s.N + n) * s.H * s.D);
  };
  int broken = 0;
  std::string first;
  std::mt19937 gen(5);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (std::int64_t t : {0, 3, 15, 16, 17, 255, 256, 1000, 2047, 2048, 3071, 4000, 4094}) {
    Inputs base = in;
    for (std::int64_t b = 0; b < s.B; ++b) {
      std::fill(base.dout.begin() + row(b, t + 1), base.dout.begin() + row(b, s.N), 0.f);
    }
    round_inputs(base, lc.dtype);
    Inputs other = base;
    for (std::int64_t b = 0; b < s.B; ++b) {
      for (std::int64_t n = t + 1; n < s.N; ++n) {
        for (std::int64_t h = 0; h < s.H; ++h) {
          const float gq = std::exp(3.f * normal(gen)), gk = std::exp(3.f * normal(gen));
          for (std::int64_t d = 0; d < s.D; ++d) {
            const std::size_t i = row(b, n) + static_cast<std::size_t>(h * s.D + d);
            other.q[i] = gq * normal(gen);
            other.k[i] = gk * normal(gen);
            other.v[i] = 3.f * normal(gen);
          }
        }
      }
    }
    round_inputs(other, lc.dtype);
    const Outputs before = run(base, lh::Device::kCUDA, lc.dtype, cfg);
    const Outputs after = run(other, lh::Device::kCUDA, lc.dtype, cfg);
    std::string why;
    for (std::int64_t b = 0; b < s.B && why.empty(); ++b) {
      if (std::memcmp(before.out.data() + row(b, 0), after.out.data() + row(b, 0),
                      (row(b, t + 1) - row(b, 0)) * sizeof(float)) != 0) {
        why = "an output at a position <= t changed";
      }
    }
    if (why.empty() && !bits_equal(before.dq, after.dq)) why = "dq changed";
    if (why.empty() && !bits_equal(before.dk, after.dk)) why = "dk changed";
    if (why.empty() && !bits_equal(before.dv, after.dv)) why = "dv changed";
    if (!why.empty() && broken++ == 0) first = "t = " + std::to_string(t) + ": " + why;
  }
  if (lc.selection != lh::Selection::kOriginal) {
    EXPECT_EQ(broken, 0) << "selection = " << lh::selection_name(lc.selection)
                         << " leaked; first: " << first;
  } else {
    std::printf(
        "[ leaks    ] original selection on the GPU broke causality at %d of 13 positions\n",
        broken);
    EXPECT_GT(broken, 0) << "the check did not catch the original selection's leak";
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, CudaStrictCausality,
                         ::testing::Values(LeakCase{lh::DType::kBFloat16, lh::Selection::kCausal},
                                           LeakCase{lh::DType::kFloat32, lh::Selection::kCausal},
                                           LeakCase{lh::DType::kBFloat16, lh::Selection::kStride},
                                           LeakCase{lh::DType::kBFloat16,
                                                    lh::Selection::kOriginal}),
                         [](const auto& info) {
                           return std::string(lh::dtype_name(info.param.dtype)) + "_" +
                                  lh::selection_name(info.param.selection);
                         });

}  // namespace
}  // namespace lighthouse::testing
