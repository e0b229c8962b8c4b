// Packed documents (docs/SPEC.md, "Packed documents"): documents delimited by cu_seqlens are each
// attended as their own sequence under the any-length rule. Tested against separate runs per
// document bit for bit (outputs and gradients; norm and dilated scorers, both selections, GQA,
// dense configs, random partitions with length-1 documents and documents below the dense
// threshold), garbage in the other documents (nothing leaks), every cu_seqlens rule, thread
// counts, a context buffer of context_bytes_varlen() bytes, and that bound against the exact
// need.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/backend.hpp"
#include "core/varlen.hpp"
#include "lighthouse/context_parallel.hpp"
#include "lighthouse/lighthouse.hpp"
#include "support/invalid_argument.hpp"
#include "support/library_run.hpp"
#include "support/random.hpp"

namespace {

using lhtest::Shape;
using lighthouse::Config;
using lighthouse::DType;
using Offsets = std::vector<std::int32_t>;

// Random documents filling each of B rows of N tokens: a mix of length-1 documents, short ones
// (below the dense threshold of the configs here), and long ones (padded or not).
Offsets random_partition(std::int64_t B, std::int64_t N, std::uint64_t seed) {
  lhtest::Rng rng(seed);
  Offsets cu{0};
  for (std::int64_t b = 0; b < B; ++b) {
    std::int64_t pos = 0;
    while (pos < N) {
      const double u = rng.uniform();
      std::int64_t len = u < 0.2   ? 1
                         : u < 0.5 ? 2 + rng.below(60)
                         : u < 0.7 ? 100 + rng.below(400)
                                   : 600 + rng.below(900);
      len = std::min(len, N - pos);
      pos += len;
      cu.push_back(static_cast<std::int32_t>(b * N + pos));
    }
  }
  return cu;
}

lighthouse::Tensor offsets_tensor(const Offsets& cu) {
  lighthouse::Tensor t = lighthouse::Tensor::empty(DType::kInt32, lighthouse::Device::kCPU,
                                                   {static_cast<std::int64_t>(cu.size())});
  for (std::size_t i = 0; i < cu.size(); ++i) t.data<std::int32_t>()[i] = cu[i];
  return t;
}

// Tokens [begin, end) of the flattened (b, n) order of [B, N, H', D] values.
std::vector<double> tokens(const std::vector<double>& x, std::int64_t begin, std::int64_t end,
                           std::int64_t row) {
  return {x.begin() + begin * row, x.begin() + end * row};
}

// Document i of a packed problem as a problem of its own, [1, len, H, D].
lhtest::Problem document(const lhtest::Problem& p, const Offsets& cu, std::size_t i) {
  const std::int64_t begin = cu[i], end = cu[i + 1];
  const Shape& s = p.shape;
  const std::int64_t kv_row = p.kv_shape().H * s.D, row = s.H * s.D;
  lhtest::Problem d = p;
  d.shape = {1, end - begin, s.H, s.D};
  d.q = tokens(p.q, begin, end, row);
  d.k = tokens(p.k, begin, end, kv_row);
  d.v = tokens(p.v, begin, end, kv_row);
  d.dout = tokens(p.dout, begin, end, row);
  return d;
}

// forward() and backward() of a packed problem through the public API.
lhtest::Outputs run_packed(const lhtest::Problem& p, const Offsets& cu, DType dtype,
                           const lighthouse::Options& options = {}) {
  const Shape& s = p.shape;
  const Shape kv = p.kv_shape();
  const lighthouse::Tensor q = lhtest::to_tensor(p.q, dtype, s),
                           k = lhtest::to_tensor(p.k, dtype, kv),
                           v = lhtest::to_tensor(p.v, dtype, kv),
                           out = lhtest::nan_tensor(dtype, s),
                           dout = lhtest::to_tensor(p.dout, dtype, s),
                           dq = lhtest::nan_tensor(dtype, s), dk = lhtest::nan_tensor(dtype, kv),
                           dv = lhtest::nan_tensor(dtype, kv);
  const lighthouse::Tensor offsets = offsets_tensor(cu);
  lighthouse::Context ctx;
  lighthouse::forward(p.config, q, k, v, out, offsets, ctx, options);
  lighthouse::backward(ctx, dout, dq, dk, dv, options);
  lhtest::Outputs r;
  r.plan = ctx.plan();
  r.indices = ctx.indices();
  r.out = lhtest::to_vector(out);
  r.dq = lhtest::to_vector(dq);
  r.dk = lhtest::to_vector(dk);
  r.dv = lhtest::to_vector(dv);
  return r;
}

bool same(const lhtest::Outputs& a, const lhtest::Outputs& b) {
  return lhtest::same_bits(a.out, b.out) && lhtest::same_bits(a.dq, b.dq) &&
         lhtest::same_bits(a.dk, b.dk) && lhtest::same_bits(a.dv, b.dv);
}

// Document i's part of the packed results equals its separate run, bit for bit.
void expect_document_matches(const lhtest::Outputs& packed, const lhtest::Outputs& separate,
                             const Offsets& cu, std::size_t i, std::int64_t row,
                             std::int64_t kv_row) {
  SCOPED_TRACE("document " + std::to_string(i) + ": tokens [" + std::to_string(cu[i]) + ", " +
               std::to_string(cu[i + 1]) + ")");
  EXPECT_TRUE(lhtest::same_bits(tokens(packed.out, cu[i], cu[i + 1], row), separate.out));
  EXPECT_TRUE(lhtest::same_bits(tokens(packed.dq, cu[i], cu[i + 1], row), separate.dq));
  EXPECT_TRUE(lhtest::same_bits(tokens(packed.dk, cu[i], cu[i + 1], kv_row), separate.dk));
  EXPECT_TRUE(lhtest::same_bits(tokens(packed.dv, cu[i], cu[i + 1], kv_row), separate.dv));
}

using Case = lhtest::ShapeCase;

class PackedDocuments : public ::testing::TestWithParam<Case> {};

// Random partitions (two seeds) of B rows: every document's output and gradients equal those of
// a separate forward/backward on that document alone, in float32 and float64.
TEST_P(PackedDocuments, EqualSeparateRunsBitForBit) {
  const Case& c = GetParam();
  const Config config = c.config();
  const Shape& s = c.shape;
  for (std::uint64_t seed : {1, 2}) {
    const Offsets cu = random_partition(s.B, s.N, seed + 100 * s.N);
    SCOPED_TRACE("partition seed " + std::to_string(seed) + ", " + std::to_string(cu.size() - 1) +
                 " documents");
    const lhtest::Problem p = lhtest::random_problem(config, s, seed, c.kv_heads);
    const std::int64_t row = s.H * s.D, kv_row = p.kv_shape().H * s.D;
    for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
      SCOPED_TRACE(lighthouse::dtype_name(dtype));
      const lhtest::Outputs packed = run_packed(p, cu, dtype);
      for (std::size_t i = 0; i + 1 < cu.size(); ++i) {
        const lhtest::Outputs separate = lhtest::run_library(document(p, cu, i), dtype);
        expect_document_matches(packed, separate, cu, i, row, kv_row);
      }
    }
  }
}

using lighthouse::Scorer;
using lighthouse::Selection;
INSTANTIATE_TEST_SUITE_P(
    Configs, PackedDocuments,
    ::testing::Values(
        // L 2, p 2, K 128: short documents dense, odd lengths >= 257 padded by one.
        Case{"norm_original", {2, 2048, 2, 8}, 0, 2, 2, 128},
        Case{"norm_causal", {2, 2048, 2, 8}, 0, 2, 2, 128, Selection::kCausal},
        // L 3, p 2, K 128: short documents dense, others padded to multiples of 4.
        Case{"three_levels", {1, 3000, 2, 8}, 0, 3, 2, 128, Selection::kCausal},
        Case{"gqa", {1, 3000, 4, 8}, 2, 2, 2, 128, Selection::kCausal},
        Case{"mqa_original", {2, 1500, 4, 8}, 1, 2, 2, 128},
        Case{"dilated_causal",
             {1, 3000, 2, 8},
             0,
             2,
             2,
             128,
             Selection::kCausal,
             Scorer::kDilated,
             3},
        Case{"dilated_original",
             {1, 3000, 2, 8},
             0,
             2,
             2,
             128,
             Selection::kOriginal,
             Scorer::kDilated,
             2},
        Case{"dense_config", {2, 1000, 2, 8}, 0, 1, 2, 128}),
    lhtest::shape_case_name);

// Fixed documents that cover each kind: length 1, dense (5: padded it would gather S >= 5), a
// valid length (300, 700), two that pad to the same length (701, 702: one group), and one that
// pads alone (1001).
TEST(PackedDocumentsFixed, EveryKindOfDocumentMatchesItsSeparateRun) {
  const Config config = lhtest::make_config(2, 2, 128);
  const Offsets cu{0, 1, 6, 306, 1006, 1707, 2409, 3410};
  const Shape s{1, 3410, 2, 8};
  const lhtest::Problem p = lhtest::random_problem(config, s, 5);
  const lhtest::Outputs packed = run_packed(p, cu, DType::kFloat32);
  for (std::size_t i = 0; i + 1 < cu.size(); ++i) {
    const lhtest::Outputs separate = lhtest::run_library(document(p, cu, i), DType::kFloat32);
    expect_document_matches(packed, separate, cu, i, s.H * s.D, s.H * s.D);
  }
  // Context::indices(): each group's [documents, Hkv, S], S of the document's plan (S = N for
  // the dense exception; 300 is a valid length whose S, 406, exceeds it).
  std::size_t expected = 0;
  for (std::size_t i = 0; i + 1 < cu.size(); ++i) {
    expected += 2 * lighthouse::make_plan(config, 1, cu[i + 1] - cu[i], 2, 8).S;
  }
  EXPECT_EQ(packed.indices.size(), expected);
}

// Whatever the other documents hold (NaN, huge values, noise) and whatever gradient flows into
// them, one document's outputs and gradients keep their bits.
TEST(PackedDocumentsFixed, NothingLeaksBetweenDocuments) {
  const Offsets cu{0, 700, 701, 1200, 2000, 2048};
  const Shape s{1, 2048, 2, 8};
  for (Selection selection : {Selection::kOriginal, Selection::kCausal}) {
    Config config = lhtest::make_config(2, 2, 128);
    config.selection = selection;
    const lhtest::Problem p = lhtest::random_problem(config, s, 9);
    const lhtest::Outputs ref = run_packed(p, cu, DType::kFloat32);
    for (std::size_t keep : {0, 2, 3}) {
      SCOPED_TRACE("kept document " + std::to_string(keep));
      lhtest::Problem g = p;
      const std::vector<double> noise = lhtest::random_normal(s.numel(), 77, 1e4);
      for (std::int64_t t = 0; t < s.N; ++t) {
        if (t >= cu[keep] && t < cu[keep + 1]) continue;
        for (std::int64_t e = 0; e < s.H * s.D; ++e) {
          const std::size_t at = static_cast<std::size_t>(t * s.H * s.D + e);
          g.q[at] = e % 3 == 0 ? std::numeric_limits<double>::quiet_NaN() : noise[at];
          g.k[at] = e % 3 == 1 ? 1e30 : -noise[at];
          g.v[at] = noise[at];
          g.dout[at] = e % 3 == 2 ? std::numeric_limits<double>::infinity() : noise[at];
        }
      }
      const lhtest::Outputs dirty = run_packed(g, cu, DType::kFloat32);
      const std::int64_t row = s.H * s.D;
      for (auto member : {&lhtest::Outputs::out, &lhtest::Outputs::dq, &lhtest::Outputs::dk,
                          &lhtest::Outputs::dv}) {
        EXPECT_TRUE(lhtest::same_bits(tokens(ref.*member, cu[keep], cu[keep + 1], row),
                                      tokens(dirty.*member, cu[keep], cu[keep + 1], row)));
      }
    }
  }
}

// The same bits for every thread count.
TEST(PackedDocumentsFixed, SameBitsForAnyThreadCount) {
  Config config = lhtest::make_config(2, 2, 128);
  config.selection = Selection::kCausal;
  const Shape s{2, 2048, 2, 8};
  const Offsets cu = random_partition(s.B, s.N, 31);
  const lhtest::Problem p = lhtest::random_problem(config, s, 3);
  lighthouse::Options one;
  one.threads = 1;
  const lhtest::Outputs ref = run_packed(p, cu, DType::kFloat32, one);
  for (int threads : {2, 3, 0}) {
    lighthouse::Options options;
    options.threads = threads;
    EXPECT_TRUE(same(ref, run_packed(p, cu, DType::kFloat32, options))) << threads << " threads";
  }
}

// A caller's buffer of context_bytes_varlen() bytes gives a Context's bits.
TEST(PackedDocumentsFixed, ContextBufferMatchesContext) {
  Config config = lhtest::make_config(2, 2, 128);
  const Shape s{2, 2048, 4, 8};
  const Offsets cu = random_partition(s.B, s.N, 41);
  const lhtest::Problem p = lhtest::random_problem(config, s, 4, 2);
  const lhtest::Outputs ref = run_packed(p, cu, DType::kFloat32);
  const Shape kv = p.kv_shape();
  const std::size_t bytes = lighthouse::context_bytes_varlen(
      config, s.B * s.N, static_cast<std::int64_t>(cu.size() - 1), s.H, kv.H, s.D, DType::kFloat32);
  std::vector<std::uint64_t> storage(bytes / 8 + 16);
  auto* base = reinterpret_cast<unsigned char*>(storage.data());
  void* aligned = base + (lighthouse::kContextAlignment -
                          reinterpret_cast<std::uintptr_t>(base) % lighthouse::kContextAlignment) %
                             lighthouse::kContextAlignment;
  const lighthouse::ContextBuffer ctx{aligned, bytes};
  const lighthouse::Tensor q = lhtest::to_tensor(p.q, DType::kFloat32, s),
                           k = lhtest::to_tensor(p.k, DType::kFloat32, kv),
                           v = lhtest::to_tensor(p.v, DType::kFloat32, kv),
                           dout = lhtest::to_tensor(p.dout, DType::kFloat32, s),
                           out = lhtest::nan_tensor(DType::kFloat32, s),
                           dq = lhtest::nan_tensor(DType::kFloat32, s),
                           dk = lhtest::nan_tensor(DType::kFloat32, kv),
                           dv = lhtest::nan_tensor(DType::kFloat32, kv);
  const lighthouse::Tensor offsets = offsets_tensor(cu);
  lighthouse::forward(config, q, k, v, out, offsets, ctx);
  lighthouse::backward(config, offsets, ctx, dout, dq, dk, dv);
  EXPECT_TRUE(lhtest::same_bits(ref.out, lhtest::to_vector(out)));
  EXPECT_TRUE(lhtest::same_bits(ref.dq, lhtest::to_vector(dq)));
  EXPECT_TRUE(lhtest::same_bits(ref.dk, lhtest::to_vector(dk)));
  EXPECT_TRUE(lhtest::same_bits(ref.dv, lhtest::to_vector(dv)));
  // One byte short of the exact need is rejected, naming ctx.bytes.
  const lighthouse::Packing packing =
      lighthouse::make_packing(config, {cu.begin(), cu.end()}, s.N, s.H, s.D, kv.H,
                               lighthouse::backend_for(lighthouse::Device::kCPU), DType::kFloat32);
  lhtest::expect_invalid(
      [&] {
        lighthouse::forward(config, q, k, v, out, offsets,
                            lighthouse::ContextBuffer{aligned, packing.context_bytes - 1});
      },
      {"ctx.bytes"}, std::to_string(packing.context_bytes - 1), {"context_bytes_varlen"});
}

// context_bytes_varlen() (shapes only) is at least the exact need of random partitions, for
// configs with and without padding, the dense exception, the dilated scorer, GQA and float64.
TEST(PackedDocumentsFixed, ShapeOnlyBoundCoversTheExactNeed) {
  struct Geometry {
    int levels, pool, topk;
    Scorer scorer;
    int dilation;
  };
  for (const Geometry& g :
       {Geometry{2, 2, 128, Scorer::kNorm, 4}, Geometry{3, 4, 256, Scorer::kNorm, 4},
        Geometry{2, 4, 128, Scorer::kNorm, 4}, Geometry{3, 2, 128, Scorer::kDilated, 3},
        Geometry{1, 2, 128, Scorer::kNorm, 4}, Geometry{4, 2, 256, Scorer::kNorm, 4}}) {
    Config config = lhtest::make_config(g.levels, g.pool, g.topk);
    config.scorer = g.scorer;
    config.dilation = g.dilation;
    for (std::int64_t N : {1, 700, 4096, 20011}) {
      for (std::uint64_t seed = 0; seed < 6; ++seed) {
        const std::int64_t B = 1 + static_cast<std::int64_t>(seed % 2);
        Offsets cu = random_partition(B, N, seed * 7 + N);
        if (seed == 5) cu = {0, static_cast<std::int32_t>(B * N)};  // one document
        if (B == 2 && seed == 5)
          cu = {0, static_cast<std::int32_t>(N), static_cast<std::int32_t>(2 * N)};
        for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
          const std::int64_t kv_heads = g.scorer == Scorer::kDilated ? 4 : 2;
          const lighthouse::Packing packing =
              lighthouse::make_packing(config, {cu.begin(), cu.end()}, N, 4, 16, kv_heads,
                                       lighthouse::backend_for(lighthouse::Device::kCPU), dtype);
          const std::size_t bound = lighthouse::context_bytes_varlen(
              config, B * N, static_cast<std::int64_t>(cu.size() - 1), 4, kv_heads, 16, dtype);
          EXPECT_GE(bound, packing.context_bytes)
              << "levels " << g.levels << " pool " << g.pool << " topk " << g.topk << " N " << N
              << " documents " << cu.size() - 1;
        }
      }
    }
  }
}

// Every rule of cu_seqlens is an InvalidArgument naming it, its value and the rule.
TEST(PackedDocumentsFixed, BadOffsetsAreRejected) {
  const Config config = lhtest::make_config(2, 2, 128);
  const Shape s{2, 64, 1, 8};
  const lighthouse::Tensor q = lhtest::to_tensor(std::vector<double>(s.numel(), 0.5),
                                                 DType::kFloat32, s),
                           out = lhtest::nan_tensor(DType::kFloat32, s);
  auto run = [&](const lighthouse::TensorView& cu, const lighthouse::Options& options = {}) {
    lighthouse::Context ctx;
    lighthouse::forward(config, q, q, q, out, cu, ctx, options);
  };
  auto offsets = [&](const Offsets& cu) { return offsets_tensor(cu); };
  lhtest::expect_invalid(
      [&] {
        run(offsets({0, 10, 10, 128}));
      },
      {"cu_seqlens"}, "cu_seqlens[2] = 10", {"strictly increasing"});
  lhtest::expect_invalid(
      [&] {
        run(offsets({0, 64, 30, 128}));
      },
      {"cu_seqlens"}, "cu_seqlens[2] = 30", {"strictly increasing"});
  lhtest::expect_invalid(
      [&] {
        run(offsets({3, 64, 128}));
      },
      {"cu_seqlens"}, "cu_seqlens[0] = 3", {"start at 0"});
  lhtest::expect_invalid(
      [&] {
        run(offsets({0, 64, 100}));
      },
      {"cu_seqlens"}, "cu_seqlens[2] = 100", {"must end at B * N"});
  lhtest::expect_invalid(
      [&] {
        run(offsets({0, 64, 130}));
      },
      {"cu_seqlens"}, "cu_seqlens[2] = 130", {"must end at B * N"});
  lhtest::expect_invalid(
      [&] {
        run(offsets({0, 60, 128}));
      },
      {"cu_seqlens"}, "cu_seqlens[1] = 60", {"straddle"});
  lhtest::expect_invalid([&] { run(offsets({0})); }, {"cu_seqlens"}, "[1]", {"at least two"});
  const lighthouse::Tensor wide =
      lighthouse::Tensor::zeros(DType::kInt64, lighthouse::Device::kCPU, {3});
  lhtest::expect_invalid([&] { run(wide); }, {"cu_seqlens"}, "int64", {"must be int32"});
  const lighthouse::Tensor square =
      lighthouse::Tensor::zeros(DType::kInt32, lighthouse::Device::kCPU, {3, 3});
  lhtest::expect_invalid([&] { run(square); }, {"cu_seqlens"}, "[3, 3]", {"rank-1"});
  // Not with context parallelism: documents would cross the ranks' chunks.
  auto comms = lighthouse::make_thread_communicators(1);
  lighthouse::Options cp;
  cp.comm = comms[0].get();
  lhtest::expect_invalid(
      [&] {
        run(offsets({0, 64, 128}), cp);
      },
      {"cu_seqlens"}, "comm", {"context parallelism"});
}

}  // namespace
