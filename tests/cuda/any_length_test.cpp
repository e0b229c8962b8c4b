// Any sequence length on the GPU (docs/SPEC.md, "Any sequence length"): the padded run of the
// core over the CUDA backend equals the CUDA run on explicitly zero-padded tensors bit for bit
// (Context and ContextBuffer, contiguous and strided views, fp32 and bf16), garbage in the padding
// changes nothing with the causal selection, the dense exception is the levels-1 run, and the
// CPU backend agrees to rounding. Every test skips when no GPU is present.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "support/library_runs.hpp"
#include "support/require_gpu.hpp"

namespace lighthouse::testing {
namespace {

// [B, N, H', D] rows padded to `len` tokens with zeros (or normal garbage of stddev 30).
std::vector<float> pad(const std::vector<float>& x, const Shape& s, std::int64_t heads,
                       std::int64_t len, bool garbage, std::uint32_t seed) {
  const std::int64_t row = heads * s.D;
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.f, 30.f);
  std::vector<float> y;
  for (std::int64_t b = 0; b < s.B; ++b) {
    y.insert(y.end(), x.begin() + b * s.N * row, x.begin() + (b + 1) * s.N * row);
    for (std::int64_t i = 0; i < (len - s.N) * row; ++i) y.push_back(garbage ? normal(gen) : 0.f);
  }
  return y;
}

std::vector<float> first_tokens(const std::vector<float>& x, const Shape& s, std::int64_t heads,
                                std::int64_t len) {
  const std::int64_t row = heads * s.D;
  std::vector<float> y;
  for (std::int64_t b = 0; b < s.B; ++b) {
    y.insert(y.end(), x.begin() + b * len * row, x.begin() + (b * len + s.N) * row);
  }
  return y;
}

Inputs padded_inputs(const Inputs& in, std::int64_t len, bool garbage) {
  Inputs p = in;
  p.shape.N = len;
  p.q = pad(in.q, in.shape, in.shape.H, len, garbage, 1);
  p.k = pad(in.k, in.shape, in.shape.H, len, garbage, 2);
  p.v = pad(in.v, in.shape, in.shape.H, len, garbage, 3);
  p.dout = pad(in.dout, in.shape, in.shape.H, len, false, 4);  // no gradient from the padding
  return p;
}

void expect_first_tokens_equal(const Outputs& any, const Outputs& padded, const Shape& s,
                               std::int64_t len) {
  EXPECT_EQ(any.indices, padded.indices) << first_difference(any.indices, padded.indices);
  EXPECT_TRUE(bits_equal(any.out, first_tokens(padded.out, s, s.H, len))) << "out";
  EXPECT_TRUE(bits_equal(any.dq, first_tokens(padded.dq, s, s.H, len))) << "dq";
  EXPECT_TRUE(bits_equal(any.dk, first_tokens(padded.dk, s, s.H, len))) << "dk";
  EXPECT_TRUE(bits_equal(any.dv, first_tokens(padded.dv, s, s.H, len))) << "dv";
}

TEST(CudaAnyLength, EqualsThePaddedRunBitForBit) {
  LIGHTHOUSE_REQUIRE_GPU();
  const Case c{{2, 5001, 4, 64}, 3, 4, 256};  // padded to 5024
  const Config cfg = config_of(c);
  const Plan plan = make_plan(cfg, c.shape.B, c.shape.N, c.shape.H, c.shape.D);
  ASSERT_TRUE(plan.runs_padded());
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    SCOPED_TRACE(dtype_name(dtype));
    Inputs in = random_inputs(c.shape, 5);
    round_inputs(in, dtype);
    const Outputs padded =
        run(padded_inputs(in, plan.padded_seq, false), Device::kCUDA, dtype, cfg);
    for (const RunFlags& flags : {RunFlags{}, RunFlags{.strided = true, .strided_grads = true},
                                  RunFlags{.context_buffer = true}}) {
      SCOPED_TRACE(flags.strided ? "strided" : flags.context_buffer ? "context buffer" : "plain");
      expect_first_tokens_equal(run(in, Device::kCUDA, dtype, cfg, flags), padded, c.shape,
                                plan.padded_seq);
    }
  }
}

// Per [b, h] row of the selected entries, those that start at a real token (< n), in their
// order. Pyramid entries are numbered level by level: level l's entries follow the `len / p^j`
// entries of every finer level j, and entry e of level l starts at token e * p^l. Garbage in the
// padding may change which padding entries fill a tile's slots, and so where the real entries
// sit among them (a tile is sorted by position keys), never which real entries are kept.
std::vector<std::vector<std::int32_t>> real_entries(const std::vector<std::int32_t>& indices,
                                                    std::int64_t rows, std::int64_t len,
                                                    std::int64_t n, std::int64_t pool,
                                                    std::int64_t levels) {
  const std::size_t per_row = indices.size() / static_cast<std::size_t>(rows);
  std::vector<std::vector<std::int32_t>> real(static_cast<std::size_t>(rows));
  for (std::size_t i = 0; i < indices.size(); ++i) {
    std::int64_t e = indices[i], start = 0, width = 1, count = len;
    for (std::int64_t l = 0; l < levels && e >= start + count; ++l) {
      start += count;
      count /= pool;
      width *= pool;
    }
    if ((e - start) * width < n) real[i / per_row].push_back(indices[i]);
  }
  return real;
}

TEST(CudaAnyLength, GarbageInThePaddingChangesNothingWithTheCausalSelection) {
  LIGHTHOUSE_REQUIRE_GPU();
  const Case c{{1, 8200, 2, 64}, 3, 4, 512};  // padded to 8256 (a multiple of 16 x 4 = 64, >= 8192)
  const Config cfg = causal_of(c);
  const Plan plan = make_plan(cfg, c.shape.B, c.shape.N, c.shape.H, c.shape.D);
  ASSERT_TRUE(plan.runs_padded());
  Inputs in = random_inputs(c.shape, 6);
  const Outputs any = run(in, Device::kCUDA, DType::kFloat32, cfg);
  const Outputs garbage =
      run(padded_inputs(in, plan.padded_seq, true), Device::kCUDA, DType::kFloat32, cfg);
  const auto real = [&](const Outputs& o) {
    return real_entries(o.indices, c.shape.B * c.shape.H, plan.padded_seq, c.shape.N, cfg.pool,
                        cfg.levels);
  };
  const auto want = real(any), got = real(garbage);
  for (std::size_t row = 0; row < want.size(); ++row) {
    EXPECT_EQ(want[row], got[row]) << "row " << row << ": " << first_difference(want[row], got[row]);
  }
  Outputs same_indices = garbage;
  same_indices.indices = any.indices;  // compared above, on the real entries
  expect_first_tokens_equal(any, same_indices, c.shape, plan.padded_seq);
}

TEST(CudaAnyLength, MatchesTheCpuBackend) {
  LIGHTHOUSE_REQUIRE_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend in this build";
  const Case c{{1, 3001, 2, 32}, 3, 2, 128};  // padded to 3004
  const Config cfg = config_of(c);
  const Inputs in = random_inputs(c.shape, 7);
  const Outputs gpu = run(in, Device::kCUDA, DType::kFloat32, cfg);
  const Outputs cpu = run(in, Device::kCPU, DType::kFloat32, cfg);
  EXPECT_EQ(gpu.indices, cpu.indices) << first_difference(gpu.indices, cpu.indices);
  expect_close(gpu, cpu, 1e-4, "CUDA vs CPU at a padded length");
}

// Where the padded length's S would be >= N: the levels-1 run, bit for bit (N = 1 included).
TEST(CudaAnyLength, DenseWhereThePaddedSWouldReachN) {
  LIGHTHOUSE_REQUIRE_GPU();
  for (std::int64_t n : {1, 7, 1000}) {
    SCOPED_TRACE(n);
    const Case c{{2, n, 2, 64}, 3, 4, 128};
    Config dense = config_of(c);
    dense.levels = 1;
    const Inputs in = random_inputs(c.shape, 8);
    const Outputs any = run(in, Device::kCUDA, DType::kFloat32, config_of(c));
    const Outputs ref = run(in, Device::kCUDA, DType::kFloat32, dense);
    EXPECT_TRUE(bits_equal(any.out, ref.out));
    EXPECT_TRUE(bits_equal(any.dq, ref.dq));
    EXPECT_TRUE(bits_equal(any.dk, ref.dk));
    EXPECT_TRUE(bits_equal(any.dv, ref.dv));
  }
}

}  // namespace
}  // namespace lighthouse::testing
