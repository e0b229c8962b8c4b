// Determinism on the GPU: with Options::deterministic (the default) two runs give the same bits
// (indices, outputs, gradients); without it, cuDNN's fast backward gives the same forward bits
// and gradients close to the deterministic ones.
#include <gtest/gtest.h>

#include "support/library_runs.hpp"
#include "support/require_gpu.hpp"

namespace lighthouse::testing {
namespace {

namespace lh = lighthouse;

// Two runs give the same bits; stage times are filled when asked for.
TEST(CudaBackend, DeterministicAndTimed) {
  LIGHTHOUSE_REQUIRE_GPU();
  const Case c{{2, 8192, 2, 128}, 3, 4, 256};
  const Inputs in = random_inputs(c.shape, 77);
  const Outputs a = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c), {.timed = true});
  const Outputs b = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c));
  EXPECT_EQ(a.indices, b.indices);
  EXPECT_TRUE(bits_equal(a.out, b.out));
  EXPECT_TRUE(bits_equal(a.dq, b.dq));
  EXPECT_TRUE(bits_equal(a.dk, b.dk));
  EXPECT_TRUE(bits_equal(a.dv, b.dv));
  for (double t : {a.forward_times.pyramid, a.forward_times.selection, a.forward_times.gather,
                   a.forward_times.attention, a.forward_times.scatter, a.backward_times.scatter,
                   a.backward_times.attention, a.backward_times.gather}) {
    EXPECT_GT(t, 0.0);
  }
  EXPECT_EQ(a.backward_times.pyramid, 0.0);
  EXPECT_EQ(a.backward_times.selection, 0.0);
}

// Options::deterministic = false: cuDNN's fast backward. The forward is the same bits; the
// gradients are the same sums in another order (bf16 storage: within a few units of the last
// place), for Lighthouse and for dense attention.
TEST(CudaBackend, FastBackwardCloseToDeterministic) {
  LIGHTHOUSE_REQUIRE_GPU();
  for (const Case& c : {Case{{2, 8192, 2, 128}, 3, 4, 256}, Case{{1, 4096, 2, 128}, 1, 4, 128}}) {
    const Inputs in = random_inputs(c.shape, 78);
    const Outputs exact = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c));
    const Outputs fast =
        run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c), {.deterministic = false});
    EXPECT_EQ(fast.indices, exact.indices) << name_of(c);
    EXPECT_TRUE(bits_equal(fast.out, exact.out)) << name_of(c);
    EXPECT_LT(rel_l2(fast.dq, exact.dq), 1e-2) << name_of(c);
    EXPECT_LT(rel_l2(fast.dk, exact.dk), 1e-2) << name_of(c);
    EXPECT_LT(rel_l2(fast.dv, exact.dv), 1e-2) << name_of(c);
  }
}

}  // namespace
}  // namespace lighthouse::testing
