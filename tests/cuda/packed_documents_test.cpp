// Packed documents on the GPU (docs/SPEC.md, "Packed documents"): the core groups documents by
// plan and runs one CUDA call per group. A document alone in its group is exactly its separate
// run (the same backend call on the same values): bit for bit. Documents that share a group run
// as rows of one batched call, which cuDNN may tile differently from a batch of one: to 1e-5
// (fp32) / 1e-2 (bf16) relative L2, and the test prints whether the bits agree. Also: garbage in
// the other documents changes nothing, a context buffer of context_bytes_varlen() bytes gives the
// Context's bits, the CPU backend agrees to rounding, and offsets in host memory or breaking a rule
// are rejected naming cu_seqlens. Every test skips when no GPU is present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>

#include "support/invalid_argument.hpp"
#include "support/library_runs.hpp"
#include "support/require_gpu.hpp"

namespace lighthouse::testing {
namespace {

// L 3, p 4, K 256: valid lengths are multiples of 32 from 4096; shorter documents are dense.
const Case kCase{{2, 6000, 4, 64}, 3, 4, 256};
// Row 0: 1 (dense), 100 (dense), 4096 (valid), 1803 (dense); row 1: 5000 and 1000 — 5000 pads
// to 5024 alone; 4096 and 5000 are alone in their groups, 1 and 100 too.
const std::vector<std::int32_t> kOffsets{0, 1, 101, 4197, 6000, 11000, 12000};
// Two documents of one padded length (5001 and 5020 -> 5024) and two dense ones (999, 980).
const std::vector<std::int32_t> kShared{0, 5001, 6000, 11020, 12000};

std::vector<float> tokens(const std::vector<float>& x, std::int64_t begin, std::int64_t end,
                          std::int64_t row) {
  return {x.begin() + begin * row, x.begin() + end * row};
}

Inputs document(const Inputs& in, const std::vector<std::int32_t>& cu, std::size_t i) {
  const std::int64_t row = in.shape.H * in.shape.D;
  Inputs d;
  d.shape = {1, cu[i + 1] - cu[i], in.shape.H, in.shape.D};
  d.q = tokens(in.q, cu[i], cu[i + 1], row);
  d.k = tokens(in.k, cu[i], cu[i + 1], row);
  d.v = tokens(in.v, cu[i], cu[i + 1], row);
  d.dout = tokens(in.dout, cu[i], cu[i + 1], row);
  return d;
}

Outputs document_part(const Outputs& packed, const std::vector<std::int32_t>& cu, std::size_t i,
                      std::int64_t row) {
  Outputs d;
  d.out = tokens(packed.out, cu[i], cu[i + 1], row);
  d.dq = tokens(packed.dq, cu[i], cu[i + 1], row);
  d.dk = tokens(packed.dk, cu[i], cu[i + 1], row);
  d.dv = tokens(packed.dv, cu[i], cu[i + 1], row);
  return d;
}

bool same_bits(const Outputs& a, const Outputs& b) {
  return bits_equal(a.out, b.out) && bits_equal(a.dq, b.dq) && bits_equal(a.dk, b.dk) &&
         bits_equal(a.dv, b.dv);
}

// Each document against its separate CUDA run: bits where it is alone in its group (`alone`),
// else to the tolerance.
void check_against_separate_runs(const std::vector<std::int32_t>& cu,
                                 const std::vector<bool>& alone) {
  const Config cfg = causal_of(kCase);
  const std::int64_t row = kCase.shape.H * kCase.shape.D;
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    SCOPED_TRACE(dtype_name(dtype));
    Inputs in = random_inputs(kCase.shape, 21);
    round_inputs(in, dtype);
    const Outputs packed = run(in, Device::kCUDA, dtype, cfg, RunFlags{.cu_seqlens = cu});
    for (std::size_t i = 0; i + 1 < cu.size(); ++i) {
      SCOPED_TRACE("document " + std::to_string(i) + " of length " +
                   std::to_string(cu[i + 1] - cu[i]));
      const Outputs separate = run(document(in, cu, i), Device::kCUDA, dtype, cfg);
      const Outputs part = document_part(packed, cu, i, row);
      if (alone[i]) {
        EXPECT_TRUE(same_bits(part, separate));
      } else {
        expect_close(part, separate, dtype == DType::kFloat32 ? 1e-5 : 1e-2, "shared group");
        std::printf("[   info   ] %s document %zu (shared group): bits %s\n", dtype_name(dtype), i,
                    same_bits(part, separate) ? "equal" : "differ");
      }
    }
  }
}

TEST(CudaPackedDocuments, DocumentAloneInItsGroupEqualsItsSeparateRunBitForBit) {
  LIGHTHOUSE_REQUIRE_GPU();
  check_against_separate_runs(kOffsets, {true, true, true, true, true, true});
}

TEST(CudaPackedDocuments, DocumentsSharingAGroupMatchTheirSeparateRuns) {
  LIGHTHOUSE_REQUIRE_GPU();
  check_against_separate_runs(kShared, {false, true, false, true});
}

TEST(CudaPackedDocuments, NothingLeaksBetweenDocuments) {
  LIGHTHOUSE_REQUIRE_GPU();
  const Config cfg = causal_of(kCase);
  const std::int64_t row = kCase.shape.H * kCase.shape.D;
  const Inputs in = random_inputs(kCase.shape, 23);
  const Outputs ref =
      run(in, Device::kCUDA, DType::kFloat32, cfg, RunFlags{.cu_seqlens = kOffsets});
  const std::size_t keep = 2;  // the 4096-token document
  Inputs dirty = in;
  for (std::int64_t t = 0; t < kCase.shape.B * kCase.shape.N; ++t) {
    if (t >= kOffsets[keep] && t < kOffsets[keep + 1]) continue;
    for (std::int64_t e = 0; e < row; ++e) {
      const std::size_t at = static_cast<std::size_t>(t * row + e);
      dirty.q[at] = e % 3 == 0 ? std::numeric_limits<float>::quiet_NaN() : 1e4f;
      dirty.k[at] = e % 3 == 1 ? 1e30f : -3e3f;
      dirty.v[at] = 1e4f;
      dirty.dout[at] = e % 3 == 2 ? std::numeric_limits<float>::infinity() : 7.f;
    }
  }
  const Outputs got =
      run(dirty, Device::kCUDA, DType::kFloat32, cfg, RunFlags{.cu_seqlens = kOffsets});
  EXPECT_TRUE(
      same_bits(document_part(got, kOffsets, keep, row), document_part(ref, kOffsets, keep, row)));
}

TEST(CudaPackedDocuments, ContextBufferMatchesContext) {
  LIGHTHOUSE_REQUIRE_GPU();
  const Config cfg = causal_of(kCase);
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    SCOPED_TRACE(dtype_name(dtype));
    Inputs in = random_inputs(kCase.shape, 25);
    round_inputs(in, dtype);
    const Outputs ctx = run(in, Device::kCUDA, dtype, cfg, RunFlags{.cu_seqlens = kShared});
    const Outputs buffer =
        run(in, Device::kCUDA, dtype, cfg, RunFlags{.context_buffer = true, .cu_seqlens = kShared});
    EXPECT_TRUE(same_bits(ctx, buffer));
  }
}

TEST(CudaPackedDocuments, MatchesTheCpuBackend) {
  LIGHTHOUSE_REQUIRE_GPU();
  if (!cpu_available()) GTEST_SKIP() << "the CPU backend is not built";
  const Case small{{2, 2500, 2, 32}, 2, 2, 128};
  const std::vector<std::int32_t> cu{0, 1, 300, 1001, 2500, 3201, 5000};
  const Config cfg = causal_of(small);
  const Inputs in = random_inputs(small.shape, 27);
  const Outputs gpu = run(in, Device::kCUDA, DType::kFloat32, cfg, RunFlags{.cu_seqlens = cu});
  const Outputs cpu = run(in, Device::kCPU, DType::kFloat32, cfg, RunFlags{.cu_seqlens = cu});
  EXPECT_EQ(gpu.indices, cpu.indices) << first_difference(gpu.indices, cpu.indices);
  expect_close(gpu, cpu, 2e-5, "CUDA vs CPU");
}

TEST(CudaPackedDocuments, OffsetsMustBeOnTheDeviceAndFollowTheRules) {
  LIGHTHOUSE_REQUIRE_GPU();
  const Config cfg = causal_of(kCase);
  const Inputs in = random_inputs(kCase.shape, 29);
  // run() puts the offsets on the run's device; host offsets with CUDA tensors:
  const Shape& s = kCase.shape;
  Tensor q = Tensor::zeros(DType::kFloat32, Device::kCUDA, {s.B, s.N, s.H, s.D});
  Tensor out = Tensor::zeros(DType::kFloat32, Device::kCUDA, {s.B, s.N, s.H, s.D});
  Tensor host = Tensor::empty(DType::kInt32, Device::kCPU, {3});
  host.data<std::int32_t>()[0] = 0;
  host.data<std::int32_t>()[1] = 6000;
  host.data<std::int32_t>()[2] = 12000;
  Context ctx;
  lhtest::expect_invalid([&] { forward(cfg, q, q, q, out, host, ctx); }, {"cu_seqlens"},
                         "device cpu", {"q's device"});
  lhtest::expect_invalid(
      [&] {
        run(in, Device::kCUDA, DType::kFloat32, cfg, RunFlags{.cu_seqlens = {0, 100, 90, 12000}});
      },
      {"cu_seqlens"}, "cu_seqlens[2] = 90", {"strictly increasing"});
  lhtest::expect_invalid(
      [&] {
        run(in, Device::kCUDA, DType::kFloat32, cfg, RunFlags{.cu_seqlens = {0, 5990, 12000}});
      },
      {"cu_seqlens"}, "cu_seqlens[1] = 5990", {"straddle"});
}

}  // namespace
}  // namespace lighthouse::testing
