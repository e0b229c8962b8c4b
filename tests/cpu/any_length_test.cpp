// Any sequence length (docs/SPEC.md, "Any sequence length"): a length that breaks a shape rule
// runs on q, k, v padded with zeros to the plan's padded length, outputs and gradients cut back to
// the N real tokens; where the padded length's S would be >= N, dense causal attention on the N
// tokens. Tested against explicitly padded runs (zeros, and with the causal selection random
// garbage) bit for bit, the dense exception, N = 1, GQA, the dilated scorer, strided views, a
// context buffer, and context parallelism's rejection.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/padding.hpp"
#include "lighthouse/context_parallel.hpp"
#include "lighthouse/lighthouse.hpp"
#include "support/invalid_argument.hpp"
#include "support/library_run.hpp"
#include "support/random.hpp"

namespace {

using lhtest::Shape;
using lighthouse::Config;
using lighthouse::DType;

// The first n tokens of [B, len, H', D] rows (row = H' * D values per token).
std::vector<double> first_tokens(const std::vector<double>& x, std::int64_t B, std::int64_t len,
                                 std::int64_t n, std::int64_t row) {
  std::vector<double> y;
  for (std::int64_t b = 0; b < B; ++b) {
    y.insert(y.end(), x.begin() + b * len * row, x.begin() + (b * len + n) * row);
  }
  return y;
}

// [B, N, H', D] rows padded to `len` tokens with `fill` (len - N tokens' worth per batch).
std::vector<double> pad_tokens(const std::vector<double>& x, std::int64_t B, std::int64_t n,
                               std::int64_t len, std::int64_t row,
                               const std::vector<double>& fill) {
  std::vector<double> y;
  std::size_t f = 0;
  for (std::int64_t b = 0; b < B; ++b) {
    y.insert(y.end(), x.begin() + b * n * row, x.begin() + (b + 1) * n * row);
    for (std::int64_t i = 0; i < (len - n) * row; ++i) y.push_back(fill[f++]);
  }
  return y;
}

// The problem padded to `len` tokens: q, k, v with `garbage` (random, large) or zeros in the
// padding, dout always zero there (no gradient flows from the padding).
lhtest::Problem padded_problem(const lhtest::Problem& p, std::int64_t len, bool garbage,
                               std::uint64_t seed) {
  const Shape& s = p.shape;
  const Shape kv = p.kv_shape();
  const std::int64_t extra = s.B * (len - s.N);
  auto fill = [&](std::int64_t heads, std::uint64_t k) {
    return garbage ? lhtest::random_normal(extra * heads * s.D, seed * 8 + k, 30.0)
                   : std::vector<double>(extra * heads * s.D, 0.0);
  };
  lhtest::Problem r = p;
  r.shape.N = len;
  r.q = pad_tokens(p.q, s.B, s.N, len, s.H * s.D, fill(s.H, 0));
  r.k = pad_tokens(p.k, s.B, s.N, len, kv.H * s.D, fill(kv.H, 1));
  r.v = pad_tokens(p.v, s.B, s.N, len, kv.H * s.D, fill(kv.H, 2));
  r.dout =
      pad_tokens(p.dout, s.B, s.N, len, s.H * s.D, std::vector<double>(extra * s.H * s.D, 0.0));
  return r;
}

using Case = lhtest::ShapeCase;

class AnyLength : public ::testing::TestWithParam<Case> {};

// The any-length run equals the explicitly zero-padded run at the real positions, bit for bit:
// outputs, gradients and the selected indices; with the causal selection also a run whose
// padding holds random garbage (the original selection reads the future, so there the content of
// the padding may change which blocks of the last tiles are refined: zeros are the definition).
TEST_P(AnyLength, EqualsThePaddedRunBitForBit) {
  const Case& c = GetParam();
  const Config config = c.config();
  const lhtest::Problem p = lhtest::random_problem(config, c.shape, 7, c.kv_heads);
  const Shape& s = c.shape;
  const std::int64_t kvh = p.kv_shape().H;
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    SCOPED_TRACE(lighthouse::dtype_name(dtype));
    const lhtest::Outputs any = lhtest::run_library(p, dtype);
    ASSERT_TRUE(any.plan.runs_padded()) << any.plan.describe();
    const std::int64_t len = any.plan.padded_seq;
    const bool causal = c.selection == lighthouse::Selection::kCausal;
    for (bool garbage : causal ? std::vector<bool>{false, true} : std::vector<bool>{false}) {
      SCOPED_TRACE(garbage ? "garbage in the padding" : "zeros in the padding");
      const lhtest::Outputs padded = lhtest::run_library(padded_problem(p, len, garbage, 3), dtype);
      EXPECT_FALSE(padded.plan.needs_padding());
      EXPECT_TRUE(any.indices == padded.indices) << "selected indices differ";
      EXPECT_TRUE(lhtest::same_bits(any.out, first_tokens(padded.out, s.B, len, s.N, s.H * s.D)));
      EXPECT_TRUE(lhtest::same_bits(any.dq, first_tokens(padded.dq, s.B, len, s.N, s.H * s.D)));
      EXPECT_TRUE(lhtest::same_bits(any.dk, first_tokens(padded.dk, s.B, len, s.N, kvh * s.D)));
      EXPECT_TRUE(lhtest::same_bits(any.dv, first_tokens(padded.dv, s.B, len, s.N, kvh * s.D)));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Lengths, AnyLength,
    ::testing::Values(
        Case{"L2_1537", {1, 1537, 2, 16}, 0, 2, 2, 128},  // padded to 1538
        Case{"L3_2049", {2, 2049, 2, 8}, 0, 3, 2, 128},   // to 2052
        // to 5024 (2 tiles of 16 blocks)
        Case{"L3_p4_5001", {1, 5001, 1, 8}, 0, 3, 4, 256},
        Case{"causal_1537", {1, 1537, 2, 16}, 0, 2, 2, 128, lighthouse::Selection::kCausal},
        Case{"causal_gqa_3001", {1, 3001, 4, 8}, 2, 3, 2, 128, lighthouse::Selection::kCausal},
        Case{"causal_mqa_2003", {1, 2003, 4, 8}, 1, 2, 2, 128, lighthouse::Selection::kCausal},
        // to lcm(2, 3) steps: 2004
        Case{"causal_dilated3_2000",
             {1, 2000, 2, 8},
             0,
             2,
             2,
             128,
             lighthouse::Selection::kCausal,
             lighthouse::Scorer::kDilated,
             3}),
    lhtest::shape_case_name);

// Where the padded length's S would be >= N the function is dense causal attention on the N
// tokens: the levels-1 run, bit for bit. N = 1 included (its output is v).
TEST(AnyLength, DenseWhereThePaddedSWouldReachN) {
  for (std::int64_t n : {1, 2, 7, 1000}) {
    SCOPED_TRACE(n);
    const Shape s{2, n, 2, 8};
    const Config config = lhtest::make_config(3, 4, 128);  // padded 2048, S 1152
    const lhtest::Problem p = lhtest::random_problem(config, s, 11, 1);
    lhtest::Problem dense = p;
    dense.config.levels = 1;
    for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
      const lhtest::Outputs any = lhtest::run_library(p, dtype);
      const lhtest::Outputs ref = lhtest::run_library(dense, dtype);
      EXPECT_TRUE(any.plan.dense_fallback);
      EXPECT_TRUE(lhtest::same_bits(any.out, ref.out));
      EXPECT_TRUE(lhtest::same_bits(any.dq, ref.dq));
      EXPECT_TRUE(lhtest::same_bits(any.dk, ref.dk));
      EXPECT_TRUE(lhtest::same_bits(any.dv, ref.dv));
      if (n == 1) {  // one token attends to itself alone: out = v (k, v have one head here)
        for (std::int64_t b = 0; b < 2; ++b)
          for (std::int64_t h = 0; h < 2; ++h)
            for (std::int64_t d = 0; d < 8; ++d)
              EXPECT_NEAR(any.out[(b * 2 + h) * 8 + d], p.v[b * 8 + d], 1e-6);
      }
    }
  }
}

// Strided q, k, v, out and gradients ([B, H, N, D] memory seen as [B, N, H, D]) give the bits of
// contiguous ones: the padding copies follow the views' strides.
TEST(AnyLength, StridedViewsMatchContiguousOnes) {
  const Shape s{2, 1537, 3, 8};
  const Config config = lhtest::make_config(2, 2, 128);
  const lhtest::Problem p = lhtest::random_problem(config, s, 13);
  const lhtest::Outputs ref = lhtest::run_library(p, DType::kFloat32);
  // [B, H, N, D] tensors holding the same values.
  auto bhnd = [&](const std::vector<double>& x) {
    std::vector<double> y(x.size());
    for (std::int64_t b = 0; b < s.B; ++b)
      for (std::int64_t n = 0; n < s.N; ++n)
        for (std::int64_t h = 0; h < s.H; ++h)
          for (std::int64_t d = 0; d < s.D; ++d)
            y[((b * s.H + h) * s.N + n) * s.D + d] = x[((b * s.N + n) * s.H + h) * s.D + d];
    return lhtest::to_tensor(y, DType::kFloat32, {s.B, s.H, s.N, s.D});
  };
  const lighthouse::Tensor q = bhnd(p.q), k = bhnd(p.k), v = bhnd(p.v), dout = bhnd(p.dout);
  const Shape t{s.B, s.H, s.N, s.D};
  const lighthouse::Tensor out = lhtest::nan_tensor(DType::kFloat32, t),
                           dq = lhtest::nan_tensor(DType::kFloat32, t),
                           dk = lhtest::nan_tensor(DType::kFloat32, t),
                           dv = lhtest::nan_tensor(DType::kFloat32, t);
  lighthouse::Context ctx;
  lighthouse::forward(config, q.view().transposed(1, 2), k.view().transposed(1, 2),
                      v.view().transposed(1, 2), out.view().transposed(1, 2), ctx);
  lighthouse::backward(ctx, dout.view().transposed(1, 2), dq.view().transposed(1, 2),
                       dk.view().transposed(1, 2), dv.view().transposed(1, 2));
  EXPECT_TRUE(lhtest::same_bits(ref.out, lhtest::to_vector(out.view().transposed(1, 2))));
  EXPECT_TRUE(lhtest::same_bits(ref.dq, lhtest::to_vector(dq.view().transposed(1, 2))));
  EXPECT_TRUE(lhtest::same_bits(ref.dk, lhtest::to_vector(dk.view().transposed(1, 2))));
  EXPECT_TRUE(lhtest::same_bits(ref.dv, lhtest::to_vector(dv.view().transposed(1, 2))));
}

// A context in caller memory (what the PyTorch op uses) gives a Context's bits at a padded length.
TEST(AnyLength, ContextBufferMatchesContext) {
  const Shape s{1, 2049, 2, 8};
  const Config config = lhtest::make_config(3, 2, 128);
  const lhtest::Problem p = lhtest::random_problem(config, s, 17);
  const lhtest::Outputs ref = lhtest::run_library(p, DType::kFloat32);
  const lighthouse::Plan plan = lighthouse::make_plan(config, s.B, s.N, s.H, s.D);
  ASSERT_TRUE(plan.runs_padded());
  const std::size_t bytes = lighthouse::context_bytes(plan, DType::kFloat32);
  std::vector<std::uint64_t> storage(bytes / 8 + 16);
  auto* base = reinterpret_cast<unsigned char*>(storage.data());
  void* aligned = base + (lighthouse::kContextAlignment -
                          reinterpret_cast<std::uintptr_t>(base) % lighthouse::kContextAlignment) %
                             lighthouse::kContextAlignment;
  const lighthouse::ContextBuffer ctx{aligned, bytes};
  const lighthouse::Tensor q = lhtest::to_tensor(p.q, DType::kFloat32, s),
                           k = lhtest::to_tensor(p.k, DType::kFloat32, s),
                           v = lhtest::to_tensor(p.v, DType::kFloat32, s),
                           dout = lhtest::to_tensor(p.dout, DType::kFloat32, s),
                           out = lhtest::nan_tensor(DType::kFloat32, s),
                           dq = lhtest::nan_tensor(DType::kFloat32, s),
                           dk = lhtest::nan_tensor(DType::kFloat32, s),
                           dv = lhtest::nan_tensor(DType::kFloat32, s);
  lighthouse::forward(config, q, k, v, out, ctx);
  lighthouse::backward(config, ctx, dout, dq, dk, dv);
  EXPECT_TRUE(lhtest::same_bits(ref.out, lhtest::to_vector(out)));
  EXPECT_TRUE(lhtest::same_bits(ref.dq, lhtest::to_vector(dq)));
  EXPECT_TRUE(lhtest::same_bits(ref.dk, lhtest::to_vector(dk)));
  EXPECT_TRUE(lhtest::same_bits(ref.dv, lhtest::to_vector(dv)));
}

// Context parallelism does not pad yet: a length that needs padding is rejected, naming seq.
TEST(AnyLength, ContextParallelismRejectsALengthThatNeedsPadding) {
  const Config config = lhtest::make_config(3, 4, 512);
  lhtest::expect_invalid([&] { lighthouse::make_shard_plan(config, 1, 8200, 4, 16, 2); }, {"seq"},
                         "8200", {"not supported yet"});
  // The dense exception is a padded length too.
  lhtest::expect_invalid([&] { lighthouse::make_shard_plan(config, 1, 1000, 4, 16, 2); }, {"seq"},
                         "1000", {"not supported yet"});
}

}  // namespace
