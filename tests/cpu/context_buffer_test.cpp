// Contexts in caller memory (ContextBuffer): the same bits as an owned Context, a layout that
// fits in context_bytes(), a buffer that is all backward needs, and clear errors for a null,
// misaligned or short buffer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/backend.hpp"
#include "lighthouse/lighthouse.hpp"
#include "support/invalid_argument.hpp"
#include "support/library_run.hpp"
#include "support/random.hpp"

namespace {

using lhtest::expect_invalid;
using lighthouse::Config;
using lighthouse::ContextBuffer;
using lighthouse::DType;
using lighthouse::Tensor;

// 64-byte aligned host memory, pre-filled with a byte pattern.
class HostBuffer {
 public:
  explicit HostBuffer(std::size_t bytes, unsigned char fill = 0xA5)
      : bytes_(bytes), ptr_(static_cast<unsigned char*>(std::aligned_alloc(64, round(bytes)))) {
    if (!ptr_) throw std::bad_alloc();
    std::memset(ptr_.get(), fill, round(bytes));
  }
  unsigned char* data() const { return ptr_.get(); }
  std::size_t size() const { return bytes_; }
  ContextBuffer view() const { return {ptr_.get(), bytes_}; }

 private:
  static std::size_t round(std::size_t n) { return (n + 63) / 64 * 64; }
  struct Free {
    void operator()(unsigned char* p) const { std::free(p); }
  };
  std::size_t bytes_;
  std::unique_ptr<unsigned char, Free> ptr_;
};

struct Case {
  lhtest::Shape shape;
  Config config;
};

const Case kCases[] = {
    {{2, 1024, 2, 16}, {.levels = 3, .pool = 2, .topk = 128, .scale = {}}},
    {{1, 2048, 3, 8}, {.levels = 2, .pool = 4, .topk = 256, .scale = 0.3}},
    {{2, 256, 1, 16}, {.levels = 1, .pool = 2, .topk = 128, .scale = {}}},
};

// forward() + backward() through a ContextBuffer; the inputs are overwritten with NaN between
// the two calls, so backward can only use what the buffer holds. Returns the buffer too.
std::pair<lhtest::Outputs, std::vector<std::int32_t>> run_with_buffer(
    const lhtest::Problem& p, DType dtype, const lighthouse::Options& options = {}) {
  const lhtest::Shape& s = p.shape;
  Tensor q = lhtest::to_tensor(p.q, dtype, s), k = lhtest::to_tensor(p.k, dtype, s),
         v = lhtest::to_tensor(p.v, dtype, s), out = lhtest::nan_tensor(dtype, s);
  const lighthouse::Plan plan = lighthouse::make_plan(p.config, s.B, s.N, s.H, s.D);
  HostBuffer ctx(lighthouse::context_bytes(plan, dtype));
  lighthouse::forward(p.config, q, k, v, out, ctx.view(), options);
  for (Tensor* t : {&q, &k, &v}) *t = lhtest::nan_tensor(dtype, s);

  lhtest::Outputs r;
  r.plan = plan;
  r.out = lhtest::to_vector(out);
  const Tensor dout = lhtest::to_tensor(p.dout, dtype, s), dq = lhtest::nan_tensor(dtype, s),
               dk = lhtest::nan_tensor(dtype, s), dv = lhtest::nan_tensor(dtype, s);
  lighthouse::backward(p.config, ctx.view(), dout, dq, dk, dv, options);
  r.dq = lhtest::to_vector(dq);
  r.dk = lhtest::to_vector(dk);
  r.dv = lhtest::to_vector(dv);
  // On the CPU the buffer is host memory: read the indices where the public API says they are.
  std::vector<std::int32_t> indices(static_cast<std::size_t>(plan.batch * plan.heads * plan.S));
  std::memcpy(indices.data(), ctx.data() + lighthouse::context_indices_offset(plan, dtype),
              indices.size() * sizeof(std::int32_t));
  return {std::move(r), std::move(indices)};
}

class ContextBufferBits : public ::testing::TestWithParam<DType> {};

TEST_P(ContextBufferBits, SameBitsAsAnOwnedContext) {
  const DType dtype = GetParam();
  for (const Case& c : kCases) {
    SCOPED_TRACE(::testing::Message() << "L = " << c.config.levels << ", N = " << c.shape.N);
    const lhtest::Problem problem = lhtest::random_problem(c.config, c.shape, 41);
    const lhtest::Outputs owned = lhtest::run_library(problem, dtype, {.threads = 2});
    const auto [external, indices] = run_with_buffer(problem, dtype, {.threads = 2});
    EXPECT_TRUE(indices == owned.indices) << "indices";
    EXPECT_TRUE(lhtest::same_bits(external.out, owned.out)) << "out";
    EXPECT_TRUE(lhtest::same_bits(external.dq, owned.dq)) << "dq";
    EXPECT_TRUE(lhtest::same_bits(external.dk, owned.dk)) << "dk";
    EXPECT_TRUE(lhtest::same_bits(external.dv, owned.dv)) << "dv";
    // Not vacuous: the gradients were written (they start as NaN) and are not all zero.
    EXPECT_TRUE(
        std::any_of(external.dq.begin(), external.dq.end(), [](double x) { return x != 0; }));
  }
}

INSTANTIATE_TEST_SUITE_P(Cpu, ContextBufferBits,
                         ::testing::Values(DType::kFloat32, DType::kFloat64),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(lighthouse::dtype_name(info.param));
                         });

TEST(ContextBuffer, LayoutPartsAreAlignedDisjointAndFit) {
  for (const DType dtype : {DType::kFloat32, DType::kFloat64, DType::kBFloat16}) {
    for (const Case& c : kCases) {
      const lhtest::Shape& s = c.shape;
      const lighthouse::Plan plan = lighthouse::make_plan(c.config, s.B, s.N, s.H, s.D);
      const lighthouse::ContextLayout at = lighthouse::context_layout(plan, dtype);
      const auto rows = static_cast<std::size_t>(plan.batch * plan.heads * plan.S);
      const std::size_t row = static_cast<std::size_t>(plan.head_dim) * dtype_size(dtype);
      const std::vector<std::pair<std::size_t, std::size_t>> parts = {
          {at.indices, rows * 4},
          {at.position, static_cast<std::size_t>(plan.batch * plan.heads * plan.pyramid_size) * 4},
          {at.stats, rows * lighthouse::context_stats_size(dtype)},
          {at.q, rows * row},
          {at.k, rows * row},
          {at.v, rows * row},
          {at.o, rows * row}};
      std::size_t end = 0;
      for (const auto& [offset, bytes] : parts) {
        EXPECT_EQ(offset % 256, 0u);
        EXPECT_GE(offset, end) << "parts overlap";
        end = offset + bytes;
      }
      EXPECT_LE(end, at.bytes);
      EXPECT_LT(at.bytes - end, 256u) << "no more than the last part's padding";
      EXPECT_EQ(lighthouse::context_bytes(plan, dtype), at.bytes);
      EXPECT_EQ(lighthouse::context_indices_offset(plan, dtype), at.indices);
    }
  }
  EXPECT_EQ(lighthouse::context_stats_size(DType::kFloat64), 8u);
  EXPECT_EQ(lighthouse::context_stats_size(DType::kBFloat16), 4u);
}

TEST(ContextBuffer, BytesBeyondTheContextAreLeftAlone) {
  const Case& c = kCases[0];
  const lhtest::Shape& s = c.shape;
  const lhtest::Problem p = lhtest::random_problem(c.config, s, 5);
  const lighthouse::Plan plan = lighthouse::make_plan(c.config, s.B, s.N, s.H, s.D);
  const std::size_t need = lighthouse::context_bytes(plan, DType::kFloat32);
  HostBuffer ctx(need + 4096, 0x5A);
  const Tensor q = lhtest::to_tensor(p.q, DType::kFloat32, s),
               k = lhtest::to_tensor(p.k, DType::kFloat32, s),
               v = lhtest::to_tensor(p.v, DType::kFloat32, s),
               out = lhtest::nan_tensor(DType::kFloat32, s);
  lighthouse::forward(c.config, q, k, v, out, ctx.view());
  EXPECT_TRUE(std::all_of(ctx.data() + need, ctx.data() + ctx.size(),
                          [](unsigned char b) { return b == 0x5A; }));
  EXPECT_FALSE(
      std::all_of(ctx.data(), ctx.data() + need, [](unsigned char b) { return b == 0x5A; }));
}

// Two contexts alive at once, used in the reverse order: nothing is shared between them.
TEST(ContextBuffer, InterleavedContextsAreIndependent) {
  const Case& c = kCases[0];
  const lhtest::Problem a = lhtest::random_problem(c.config, c.shape, 7);
  const lhtest::Problem b = lhtest::random_problem(c.config, c.shape, 8);
  const lhtest::Outputs expect_a = lhtest::run_library(a, DType::kFloat32);
  const lhtest::Outputs expect_b = lhtest::run_library(b, DType::kFloat32);
  const lhtest::Shape& s = c.shape;
  const lighthouse::Plan plan = lighthouse::make_plan(c.config, s.B, s.N, s.H, s.D);
  const std::size_t bytes = lighthouse::context_bytes(plan, DType::kFloat32);
  HostBuffer ctx_a(bytes), ctx_b(bytes);
  auto fwd = [&](const lhtest::Problem& p, const HostBuffer& ctx) {
    const Tensor q = lhtest::to_tensor(p.q, DType::kFloat32, s),
                 k = lhtest::to_tensor(p.k, DType::kFloat32, s),
                 v = lhtest::to_tensor(p.v, DType::kFloat32, s),
                 out = lhtest::nan_tensor(DType::kFloat32, s);
    lighthouse::forward(c.config, q, k, v, out, ctx.view());
  };
  auto bwd = [&](const lhtest::Problem& p, const HostBuffer& ctx) {
    const Tensor dout = lhtest::to_tensor(p.dout, DType::kFloat32, s),
                 dq = lhtest::nan_tensor(DType::kFloat32, s),
                 dk = lhtest::nan_tensor(DType::kFloat32, s),
                 dv = lhtest::nan_tensor(DType::kFloat32, s);
    lighthouse::backward(c.config, ctx.view(), dout, dq, dk, dv);
    return std::vector<std::vector<double>>{lhtest::to_vector(dq), lhtest::to_vector(dk),
                                            lhtest::to_vector(dv)};
  };
  fwd(a, ctx_a);
  fwd(b, ctx_b);
  const auto grads_b = bwd(b, ctx_b);
  const auto grads_a = bwd(a, ctx_a);
  EXPECT_TRUE(lhtest::same_bits(grads_a[0], expect_a.dq));
  EXPECT_TRUE(lhtest::same_bits(grads_a[2], expect_a.dv));
  EXPECT_TRUE(lhtest::same_bits(grads_b[1], expect_b.dk));
  EXPECT_FALSE(lhtest::same_bits(grads_a[0], grads_b[0]));
}

struct BadCall {
  Config config{.levels = 2, .pool = 2, .topk = 128, .scale = {}};
  lhtest::Shape s{1, 256, 2, 8};
  Tensor q = lhtest::to_tensor(lhtest::random_normal(s.numel(), 1), DType::kFloat32, s);
  Tensor out = lhtest::nan_tensor(DType::kFloat32, s);
  std::size_t bytes() const {
    return lighthouse::context_bytes(lighthouse::make_plan(config, s.B, s.N, s.H, s.D),
                                     DType::kFloat32);
  }
};

TEST(ContextBuffer, ForwardRejectsNullMisalignedAndShortBuffers) {
  BadCall c;
  HostBuffer ctx(c.bytes() + 64);
  expect_invalid(
      [&] {
        lighthouse::forward(c.config, c.q, c.q, c.q, c.out, {nullptr, c.bytes()});
      },
      {"ctx.data"}, "null", {"device memory"});
  expect_invalid(
      [&] {
        lighthouse::forward(c.config, c.q, c.q, c.q, c.out, {ctx.data() + 4, c.bytes()});
      },
      {"ctx.data"}, "0x", {"aligned"});
  expect_invalid(
      [&] {
        lighthouse::forward(c.config, c.q, c.q, c.q, c.out, {ctx.data(), c.bytes() - 1});
      },
      {"ctx.bytes"}, std::to_string(c.bytes() - 1), {"at least"});
}

TEST(ContextBuffer, BackwardRejectsShortBuffersAndInvalidConfigs) {
  BadCall c;
  HostBuffer ctx(c.bytes());
  lighthouse::forward(c.config, c.q, c.q, c.q, c.out, ctx.view());
  const Tensor dq = lhtest::nan_tensor(DType::kFloat32, c.s);
  // A longer sequence than the forward's needs a larger buffer: caught, not read out of bounds.
  const Tensor longer = lhtest::nan_tensor(DType::kFloat32, {1, 512, 2, 8});
  expect_invalid(
      [&] { lighthouse::backward(c.config, ctx.view(), longer, longer, longer, longer); },
      {"ctx.bytes"}, std::to_string(c.bytes()), {"at least"});
  Config bad = c.config;
  bad.topk = 100;
  expect_invalid([&] { lighthouse::backward(bad, ctx.view(), c.q, dq, dq, dq); }, {"topk"}, "100",
                 {"multiple"});
  const Tensor wrong = lhtest::nan_tensor(DType::kFloat32, {1, 256, 2, 16});
  expect_invalid([&] { lighthouse::backward(c.config, ctx.view(), c.q, wrong, dq, dq); }, {"dq"},
                 "16", {"shape"});
}

}  // namespace
