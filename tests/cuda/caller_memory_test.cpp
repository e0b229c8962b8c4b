// The CUDA backend on the caller's memory: strided views, dense attention on the caller's views,
// scratch borrowed from the caller's buffers, and the context in caller memory (ContextBuffer,
// what the PyTorch op uses) all give the bits of plain contiguous runs.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda/buffer_reuse.hpp"
#include "cuda/cudnn_attention.hpp"
#include "support/library_runs.hpp"
#include "support/require_gpu.hpp"

namespace lighthouse::testing {
namespace {

namespace lh = lighthouse;

// The backward keeps the gathered gradients in the caller's dq, dk and dv where they fit (two
// blocks in dk, or one per tensor) and in the workspace otherwise (strided gradients, S > N, dout
// sharing memory with dq); the forward keeps its scratch in `out` unless out is q. Every layout
// gives the bits of every other. The cases cover the three backward layouts (checked against the
// host's choice, so a change of the rule cannot silently skip one).
TEST(CudaBackend, ScratchInCallerBuffersGivesTheSameBits) {
  LIGHTHOUSE_REQUIRE_GPU();
  struct LayoutCase {
    Case c;
    lh::cuda::GradientScratch expected;
  };
  const LayoutCase cases[] = {
      {{{2, 4096, 3, 64}, 3, 4, 128}, lh::cuda::GradientScratch::kTwoBlocks},  // S = 1280
      {{{2, 2048, 2, 128}, 2, 8, 128}, lh::cuda::GradientScratch::kOneBlock},  // S = 1280
      {{{1, 1024, 2, 64}, 2, 2, 512}, lh::cuda::GradientScratch::kWorkspace},  // S = 1536
  };
  for (const LayoutCase& lc : cases) {
    const Case& c = lc.c;
    const Shape& s = c.shape;
    const lh::Plan plan = lh::make_plan(config_of(c), s.B, s.N, s.H, s.D);
    const std::size_t block = static_cast<std::size_t>(s.B * s.H * plan.S * s.D) * 2;
    // Contiguous, disjoint bf16 gradients at made-up addresses: the rule only reads sizes.
    auto fake = [&](std::uintptr_t slot) {
      return lh::TensorView::contiguous(reinterpret_cast<void*>((slot + 1) << 36),
                                        lh::DType::kBFloat16, lh::Device::kCUDA,
                                        {s.B, s.N, s.H, s.D});
    };
    ASSERT_EQ(lh::cuda::choose_gradient_scratch(fake(0), fake(1), fake(2), fake(3), {}, block),
              lc.expected)
        << name_of(c);
    for (lh::DType dtype : {lh::DType::kBFloat16, lh::DType::kFloat32}) {
      const std::string what = name_of(c) + " " + lh::dtype_name(dtype) + " (" +
                               lh::cuda::gradient_scratch_name(lc.expected) + ")";
      const Inputs in = random_inputs(s, 61);
      const Outputs plain = run(in, lh::Device::kCUDA, dtype, config_of(c));
      for (const RunFlags& flags : {RunFlags{.strided_grads = true}, RunFlags{.out_in_q = true},
                                    RunFlags{.dout_in_dq = true}}) {
        const std::string variant =
            what + (flags.strided_grads ? ", strided gradients (workspace)" : "") +
            (flags.out_in_q ? ", out in q (forward scratch in the workspace)" : "") +
            (flags.dout_in_dq ? ", dout in dq (workspace)" : "");
        const Outputs other = run(in, lh::Device::kCUDA, dtype, config_of(c), flags);
        EXPECT_EQ(other.indices, plain.indices) << variant;
        EXPECT_TRUE(bits_equal(other.out, plain.out)) << variant << ": out";
        EXPECT_TRUE(bits_equal(other.dq, plain.dq)) << variant << ": dq";
        EXPECT_TRUE(bits_equal(other.dk, plain.dk)) << variant << ": dk";
        EXPECT_TRUE(bits_equal(other.dv, plain.dv)) << variant << ": dv";
      }
      if (dtype == lh::DType::kFloat32) {
        // fp32 attention does not use cuDNN: with its workspace freed, two blocks in dk stage
        // dv_sel in the workspace instead of cuDNN's (after the bf16 runs above, large enough).
        lh::cuda::cudnn_release_workspace();
        ASSERT_EQ(lh::cuda::cudnn_workspace_bytes(), 0u);
        const Outputs unborrowed = run(in, lh::Device::kCUDA, dtype, config_of(c));
        EXPECT_TRUE(bits_equal(unborrowed.dq, plain.dq) && bits_equal(unborrowed.dk, plain.dk) &&
                    bits_equal(unborrowed.dv, plain.dv))
            << what << ": without cuDNN's workspace";
      }
    }
  }
}

// [B, N, H, D] views of [B, H, N, D] buffers give the same bits as contiguous tensors.
TEST(CudaBackend, StridedViewsMatchContiguous) {
  LIGHTHOUSE_REQUIRE_GPU();
  const Case c{{2, 4096, 3, 64}, 3, 4, 128};
  const Inputs in = random_inputs(c.shape, 31);
  const Outputs plain = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c));
  const Outputs strided = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c),
                              {.strided = true, .strided_grads = true});
  EXPECT_EQ(plain.indices, strided.indices);
  EXPECT_TRUE(bits_equal(plain.out, strided.out));
  EXPECT_TRUE(bits_equal(plain.dq, strided.dq));
  EXPECT_TRUE(bits_equal(plain.dk, strided.dk));
  EXPECT_TRUE(bits_equal(plain.dv, strided.dv));
}

// Dense attention (levels == 1) runs on the caller's views, whatever their strides: q, k, v,
// out and the gradients in either layout give the results of contiguous tensors (the same bits
// in fp32, whose kernels sum in a fixed order whatever the strides), the indices are the tokens
// in order, and a second run gives the same bits.
TEST(CudaBackend, DenseRunsOnCallerViews) {
  LIGHTHOUSE_REQUIRE_GPU();
  const Case c{{2, 1024, 3, 64}, 1, 2, 128};
  const Inputs in = random_inputs(c.shape, 41);
  std::vector<std::int32_t> tokens;
  for (std::int64_t bh = 0; bh < c.shape.B * c.shape.H; ++bh) {
    for (std::int64_t t = 0; t < c.shape.N; ++t) tokens.push_back(static_cast<std::int32_t>(t));
  }
  for (lh::DType dtype : {lh::DType::kFloat32, lh::DType::kBFloat16}) {
    const std::string name = lh::dtype_name(dtype);
    const Outputs plain = run(in, lh::Device::kCUDA, dtype, config_of(c));
    EXPECT_EQ(plain.indices, tokens) << name;
    const Outputs again = run(in, lh::Device::kCUDA, dtype, config_of(c));
    EXPECT_TRUE(bits_equal(plain.out, again.out) && bits_equal(plain.dq, again.dq) &&
                bits_equal(plain.dk, again.dk) && bits_equal(plain.dv, again.dv))
        << name << ": two runs differ";
    for (const RunFlags& flags : {RunFlags{.strided = true}, RunFlags{.strided_grads = true},
                                  RunFlags{.strided = true, .strided_grads = true}}) {
      const std::string what = name + (flags.strided ? " strided inputs" : "") +
                               (flags.strided_grads ? " strided gradients" : "");
      const Outputs other = run(in, lh::Device::kCUDA, dtype, config_of(c), flags);
      if (dtype == lh::DType::kFloat32) {
        EXPECT_TRUE(bits_equal(other.out, plain.out)) << what;
        EXPECT_TRUE(bits_equal(other.dq, plain.dq)) << what;
        EXPECT_TRUE(bits_equal(other.dk, plain.dk)) << what;
        EXPECT_TRUE(bits_equal(other.dv, plain.dv)) << what;
      } else {
        expect_close(other, plain, 1e-2, what);
      }
    }
  }
}

// The context in caller memory (what the PyTorch op uses): the same bits as an owned context
// for Lighthouse; for dense attention (levels == 1) the general path with copies, against the
// owned context's cuDNN-on-views path.
TEST(CudaBackend, ContextBufferMatchesOwnedContext) {
  LIGHTHOUSE_REQUIRE_GPU();
  for (const Case& c : {Case{{2, 4096, 3, 64}, 3, 4, 128}, Case{{1, 2048, 2, 128}, 2, 2, 256},
                        Case{{2, 1024, 2, 64}, 1, 2, 128}}) {
    const Inputs in = random_inputs(c.shape, 51);
    for (lh::DType dtype : {lh::DType::kFloat32, lh::DType::kBFloat16}) {
      const std::string what = name_of(c) + " " + lh::dtype_name(dtype);
      const Outputs owned = run(in, lh::Device::kCUDA, dtype, config_of(c));
      const Outputs external = run(in, lh::Device::kCUDA, dtype, config_of(c),
                                   {.strided = true, .context_buffer = true});
      EXPECT_EQ(external.indices, owned.indices) << what;
      if (c.levels > 1) {
        EXPECT_TRUE(bits_equal(external.out, owned.out)) << what;
        EXPECT_TRUE(bits_equal(external.dq, owned.dq)) << what;
        EXPECT_TRUE(bits_equal(external.dk, owned.dk)) << what;
        EXPECT_TRUE(bits_equal(external.dv, owned.dv)) << what;
      } else {
        expect_close(external, owned, dtype == lh::DType::kFloat32 ? 1e-5 : 1e-2, what);
      }
    }
  }
}

}  // namespace
}  // namespace lighthouse::testing
