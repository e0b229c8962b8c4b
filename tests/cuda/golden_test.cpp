// The CUDA backend on the original implementation's golden cases (tests/data/golden, loaded by
// the one loader tests/support/golden.hpp). Skips where no GPU is usable; without golden cases it
// skips loudly, and fails under CI=true (LHTEST_REQUIRE_GOLDEN).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <vector>

#include "support/golden.hpp"
#include "support/library_runs.hpp"
#include "support/require_gpu.hpp"

namespace lighthouse::testing {
namespace {

namespace lh = lighthouse;

// The original implementation's outputs (fp32 on an H200): indices exact, values to 1e-5.
// The cases come from the shared loader (tests/support/golden.hpp, tests/data/golden and
// tests/data/golden-dilated: the dilated scorer, fp32 path = the reference attention kernels).
TEST(CudaGolden, MatchesOriginal) {
  LIGHTHOUSE_REQUIRE_GPU();
  const std::vector<std::filesystem::path> dirs = lhtest::golden_case_dirs();
  LHTEST_REQUIRE_GOLDEN(dirs);
  for (const std::filesystem::path& dir : dirs) {
    SCOPED_TRACE(dir.string());
    const lhtest::GoldenCase g = lhtest::load_golden(dir);
    const Inputs in{{g.shape.B, g.shape.N, g.shape.H, g.shape.D}, g.q, g.k, g.v, g.dout};
    const Outputs gpu = run(in, lh::Device::kCUDA, lh::DType::kFloat32, g.config);
    ASSERT_EQ(gpu.indices, g.indices)
        << "first difference " << first_difference(gpu.indices, g.indices);
    const double e_out = rel_l2(gpu.out, g.out), e_dq = rel_l2(gpu.dq, g.dq);
    const double e_dk = rel_l2(gpu.dk, g.dk), e_dv = rel_l2(gpu.dv, g.dv);
    std::printf("[ golden   ] %s cuda rel L2 out %.2e dq %.2e dk %.2e dv %.2e\n",
                dir.string().c_str(), e_out, e_dq, e_dk, e_dv);
    EXPECT_LT(e_out, 1e-5);
    EXPECT_LT(e_dq, 1e-5);
    EXPECT_LT(e_dk, 1e-5);
    EXPECT_LT(e_dv, 1e-5);
  }
}

}  // namespace
}  // namespace lighthouse::testing
