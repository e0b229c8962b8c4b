// Grouped-query and multi-query attention (k and v with kv_heads dividing H) on the CPU: against
// the float64 reference that shares each group's selection and expands K/V explicitly, against
// finite differences, the multi-head function bit for bit when kv_heads == H, the context's size,
// and the shape rules.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "lighthouse/lighthouse.hpp"
#include "support/invalid_argument.hpp"
#include "support/library_run.hpp"
#include "support/random.hpp"
#include "support/reference.hpp"

namespace {

using lhtest::Shape;
using lighthouse::Config;
using lighthouse::DType;

struct Case {
  Shape shape;  // H = query heads
  std::int64_t kv_heads;
  int levels, pool, topk;
  lighthouse::Selection selection = lighthouse::Selection::kOriginal;
};

class GqaReference : public ::testing::TestWithParam<Case> {};

// The library in float64 and float32 against the expanded float64 reference: identical indices
// ([B, Hkv, S]), outputs and gradients (dk, dv summed over each group) to rounding.
TEST_P(GqaReference, MatchesTheExpandedFloat64Reference) {
  const Case& c = GetParam();
  Config config = lhtest::make_config(c.levels, c.pool, c.topk);
  config.selection = c.selection;
  const lhtest::Problem p = lhtest::random_problem(config, c.shape, 21, c.kv_heads);
  const auto indices = lhtest::select_gqa(config, c.shape, c.kv_heads, p.q, p.k);
  const auto k = lhtest::expand_kv(c.shape, c.kv_heads, p.k);
  const auto v = lhtest::expand_kv(c.shape, c.kv_heads, p.v);
  const auto per_head = lhtest::expand_indices(c.shape, c.kv_heads, indices);
  const auto out = lhtest::attend(config, c.shape, p.q, k, v, per_head);
  const auto grads = lhtest::backward(config, c.shape, p.q, k, v, per_head, p.dout);
  const auto dk = lhtest::sum_kv_groups(c.shape, c.kv_heads, grads.dk);
  const auto dv = lhtest::sum_kv_groups(c.shape, c.kv_heads, grads.dv);
  for (const auto& [dtype, tol] : {std::pair{DType::kFloat64, 1e-10}, {DType::kFloat32, 1e-5}}) {
    SCOPED_TRACE(lighthouse::dtype_name(dtype));
    const lhtest::Outputs lib = lhtest::run_library(p, dtype);
    EXPECT_EQ(lib.plan.kv_heads, c.kv_heads);
    EXPECT_EQ(lib.indices.size(), indices.size());
    EXPECT_TRUE(lib.indices == indices) << "selected indices differ from the reference";
    EXPECT_LT(lhtest::rel_l2(lib.out, out), tol);
    EXPECT_LT(lhtest::rel_l2(lib.dq, grads.dq), tol);
    EXPECT_LT(lhtest::rel_l2(lib.dk, dk), tol);
    EXPECT_LT(lhtest::rel_l2(lib.dv, dv), tol);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, GqaReference,
    ::testing::Values(Case{{1, 512, 4, 16}, 2, 2, 2, 128},  // GQA, two groups of two
                      Case{{2, 1024, 4, 8}, 1, 3, 2, 128},  // MQA
                      Case{{1, 2048, 6, 8}, 2, 3, 4, 128},  // groups of three
                      Case{{1, 1024, 4, 16}, 2, 3, 2, 256, lighthouse::Selection::kCausal},
                      Case{{1, 256, 4, 8}, 2, 1, 2, 128}));  // dense (levels 1)

// With kv_heads == H the function is today's multi-head attention, bit for bit: the same call
// with k and v of H heads, and per head the run of that head alone.
TEST(Gqa, KvHeadsEqualHeadsIsMultiHeadAttention) {
  const Shape s{1, 1024, 3, 16};
  const Config config = lhtest::make_config(3, 2, 128);
  const lhtest::Problem mha = lhtest::random_problem(config, s, 5);
  lhtest::Problem explicit_kv = mha;
  explicit_kv.kv_heads = 3;
  const lhtest::Outputs a = lhtest::run_library(mha, DType::kFloat32);
  const lhtest::Outputs b = lhtest::run_library(explicit_kv, DType::kFloat32);
  EXPECT_TRUE(a.indices == b.indices && a.out == b.out && a.dq == b.dq && a.dk == b.dk &&
              a.dv == b.dv);
  EXPECT_TRUE(a.indices == lhtest::select(config, s, mha.q, mha.k));
}

// Query heads that are copies of each other and expanded K/V: the GQA forward is the MHA forward
// on the expanded tensors, bit for bit (same selection, same rows, same attention per head); the
// K/V gradient is the sum of the expanded heads' gradients.
TEST(Gqa, CopiedQueryHeadsGiveTheExpandedMultiHeadRun) {
  const Shape s{1, 2048, 4, 16};
  const std::int64_t kv_heads = 2;
  const Config config = lhtest::make_config(3, 4, 128);
  lhtest::Problem gqa = lhtest::random_problem(config, s, 8, kv_heads);
  for (std::int64_t t = 0; t < s.N; ++t) {  // head 2g + 1 = head 2g
    for (std::int64_t g = 0; g < kv_heads; ++g) {
      const std::int64_t from = (t * s.H + 2 * g) * s.D, to = (t * s.H + 2 * g + 1) * s.D;
      std::copy_n(&gqa.q[from], s.D, &gqa.q[to]);
    }
  }
  lhtest::Problem mha = gqa;
  mha.kv_heads = 0;
  mha.k = lhtest::expand_kv(s, kv_heads, gqa.k);
  mha.v = lhtest::expand_kv(s, kv_heads, gqa.v);
  const lhtest::Outputs g = lhtest::run_library(gqa, DType::kFloat32);
  const lhtest::Outputs m = lhtest::run_library(mha, DType::kFloat32);
  EXPECT_TRUE(lhtest::expand_indices(s, kv_heads, g.indices) == m.indices);
  EXPECT_TRUE(g.out == m.out) << "forward differs from the expanded MHA run";
  EXPECT_TRUE(g.dq == m.dq) << "dq differs from the expanded MHA run";
  EXPECT_LT(lhtest::rel_l2(g.dk, lhtest::sum_kv_groups(s, kv_heads, m.dk)), 1e-6);
  EXPECT_LT(lhtest::rel_l2(g.dv, lhtest::sum_kv_groups(s, kv_heads, m.dv)), 1e-6);
}

// The context keeps k and v rows, the indices and the position map once per group.
TEST(Gqa, ContextShrinksWithTheGroupSize) {
  const Config config = lhtest::make_config(3, 4, 2048);
  const lighthouse::Plan mha = lighthouse::make_plan(config, 1, 65536, 8, 128);
  const lighthouse::Plan gqa = lighthouse::make_plan(config, 1, 65536, 8, 128, 2);
  const lighthouse::Plan mqa = lighthouse::make_plan(config, 1, 65536, 8, 128, 1);
  EXPECT_EQ(gqa.kv_heads, 2);
  EXPECT_EQ(gqa.group(), 4);
  EXPECT_EQ(gqa.S, mha.S);
  const std::size_t row = 128 * 2, rows = 8 * static_cast<std::size_t>(mha.S);
  // k and v: 6 of 8 heads' rows fewer; indices and the position map too.
  EXPECT_GE(lighthouse::context_bytes(mha, DType::kBFloat16) -
                lighthouse::context_bytes(gqa, DType::kBFloat16),
            2 * rows * row * 6 / 8);
  EXPECT_LT(lighthouse::context_bytes(mqa, DType::kBFloat16),
            lighthouse::context_bytes(gqa, DType::kBFloat16));
  EXPECT_LT(gqa.gathered_bytes(2), mha.gathered_bytes(2));
}

// The context in caller memory gives the same bits as a Context with GQA too.
TEST(Gqa, ContextBufferGivesTheSameBits) {
  const Shape s{2, 1024, 4, 16};
  const Shape kv{2, 1024, 1, 16};
  const Config config = lhtest::make_config(3, 2, 128);
  const lhtest::Problem p = lhtest::random_problem(config, s, 13, 1);
  const lhtest::Outputs owned = lhtest::run_library(p, DType::kFloat32);
  const lighthouse::Plan plan = lighthouse::make_plan(config, s.B, s.N, s.H, s.D, 1);
  std::vector<unsigned char> memory(lighthouse::context_bytes(plan, DType::kFloat32) + 64);
  void* aligned = memory.data() + (64 - reinterpret_cast<std::uintptr_t>(memory.data()) % 64) % 64;
  const lighthouse::ContextBuffer buffer{aligned, lighthouse::context_bytes(plan, DType::kFloat32)};
  const lighthouse::Tensor q = lhtest::to_tensor(p.q, DType::kFloat32, s),
                           k = lhtest::to_tensor(p.k, DType::kFloat32, kv),
                           v = lhtest::to_tensor(p.v, DType::kFloat32, kv),
                           out = lhtest::nan_tensor(DType::kFloat32, s),
                           dout = lhtest::to_tensor(p.dout, DType::kFloat32, s),
                           dq = lhtest::nan_tensor(DType::kFloat32, s),
                           dk = lhtest::nan_tensor(DType::kFloat32, kv),
                           dv = lhtest::nan_tensor(DType::kFloat32, kv);
  lighthouse::forward(config, q, k, v, out, buffer);
  lighthouse::backward(config, buffer, dout, dq, dk, dv);
  std::vector<std::int32_t> indices(owned.indices.size());
  std::memcpy(
      indices.data(),
      static_cast<const char*>(aligned) + lighthouse::context_indices_offset(plan, DType::kFloat32),
      indices.size() * sizeof(std::int32_t));
  EXPECT_TRUE(indices == owned.indices);
  EXPECT_TRUE(lhtest::to_vector(out) == owned.out);
  EXPECT_TRUE(lhtest::to_vector(dq) == owned.dq);
  EXPECT_TRUE(lhtest::to_vector(dk) == owned.dk);
  EXPECT_TRUE(lhtest::to_vector(dv) == owned.dv);
}

TEST(Gqa, DeterministicAcrossThreadCounts) {
  const Shape s{1, 2048, 6, 16};
  const lhtest::Problem p = lhtest::random_problem(lhtest::make_config(3, 2, 256), s, 17, 3);
  const lhtest::Outputs one = lhtest::run_library(p, DType::kFloat32, {.threads = 1});
  const lhtest::Outputs three = lhtest::run_library(p, DType::kFloat32, {.threads = 3});
  EXPECT_TRUE(one.indices == three.indices && one.out == three.out && one.dq == three.dq &&
              one.dk == three.dk && one.dv == three.dv);
}

// kv_heads must divide H; k and v must agree with each other and with q but for the heads; the
// gradients must have the forward's KV heads; the dilated scorer needs kv_heads == H for now.
TEST(Gqa, ShapeRules) {
  const Config config = lhtest::make_config(3, 2, 128);
  lhtest::expect_invalid([&] { lighthouse::make_plan(config, 1, 1024, 6, 16, 4); }, {"kv_heads"},
                         "kv_heads = 4", {"must divide heads = 6"});
  lhtest::expect_invalid([&] { lighthouse::make_plan(config, 1, 1024, 6, 16, -1); }, {"kv_heads"},
                         "-1", {">= 1"});
  Config dilated = config;
  dilated.scorer = lighthouse::Scorer::kDilated;
  lhtest::expect_invalid([&] { lighthouse::make_plan(dilated, 1, 1024, 4, 16, 2); }, {"scorer"},
                         "dilated", {"kv_heads == heads"});
  const Shape s{1, 1024, 4, 16};
  const lighthouse::Tensor q = lhtest::nan_tensor(DType::kFloat32, s),
                           out = lhtest::nan_tensor(DType::kFloat32, s),
                           k3 = lhtest::nan_tensor(DType::kFloat32, {1, 1024, 3, 16}),
                           k2 = lhtest::nan_tensor(DType::kFloat32, {1, 1024, 2, 16}),
                           k1 = lhtest::nan_tensor(DType::kFloat32, {1, 1024, 1, 16}),
                           short_k = lhtest::nan_tensor(DType::kFloat32, {1, 512, 2, 16});
  lighthouse::Context ctx;
  lhtest::expect_invalid([&] { lighthouse::forward(config, q, k3, k3, out, ctx); }, {"kv_heads"},
                         "3", {"must divide heads = 4"});
  lhtest::expect_invalid([&] { lighthouse::forward(config, q, short_k, short_k, out, ctx); }, {"k"},
                         "[1, 512, 2, 16]", {"[B, N, Hkv, D]"});
  lhtest::expect_invalid([&] { lighthouse::forward(config, q, k2, k1, out, ctx); }, {"v"},
                         "[1, 1024, 1, 16]", {"must have the shape of k"});
  const lhtest::Problem p = lhtest::random_problem(config, s, 3, 2);
  const lighthouse::Tensor qq = lhtest::to_tensor(p.q, DType::kFloat32, s),
                           kk = lhtest::to_tensor(p.k, DType::kFloat32, p.kv_shape()),
                           vv = lhtest::to_tensor(p.v, DType::kFloat32, p.kv_shape());
  lighthouse::forward(config, qq, kk, vv, out, ctx);
  EXPECT_EQ(ctx.indices().size(), static_cast<std::size_t>(2 * ctx.plan().S));
  const lighthouse::Tensor dq = lhtest::nan_tensor(DType::kFloat32, s);
  lhtest::expect_invalid([&] { lighthouse::backward(ctx, qq, dq, k1, k1); }, {"dk"},
                         "[1, 1024, 1, 16]", {"2 KV heads"});
}

}  // namespace
