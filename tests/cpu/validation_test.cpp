// Every rule of the spec's Validation section, through forward() and backward() on the CPU:
// a violation throws lighthouse::InvalidArgument whose param() names the parameter and whose
// message shows the value and the rule. Never a crash, never silent garbage.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "lighthouse/lighthouse.hpp"
#include "support/invalid_argument.hpp"
#include "support/random.hpp"

namespace {

using lhtest::expect_invalid;
using lighthouse::Config;
using lighthouse::Context;
using lighthouse::Device;
using lighthouse::DType;
using lighthouse::Tensor;
using lighthouse::TensorView;

const Config kConfig{.levels = 2, .pool = 2, .topk = 128, .scale = {}};

Tensor make(std::int64_t N, std::int64_t H = 2, std::int64_t D = 8, DType dtype = DType::kFloat32,
            std::uint64_t seed = 1) {
  const lhtest::Shape s{1, N, H, D};
  if (dtype != DType::kFloat32 && dtype != DType::kFloat64) {
    return Tensor::zeros(dtype, Device::kCPU, {1, N, H, D});
  }
  return lhtest::to_tensor(lhtest::random_normal(s.numel(), seed), dtype, s);
}

// A valid forward call whose pieces the tests break one at a time.
struct Call {
  Config config = kConfig;
  Tensor q = make(256, 2, 8, DType::kFloat32, 1), k = make(256, 2, 8, DType::kFloat32, 2),
         v = make(256, 2, 8, DType::kFloat32, 3), out = make(256);
  TensorView qv = q, kv = k, vv = v, ov = out;
  lighthouse::Options options{};
  Context ctx;
  void run() { lighthouse::forward(config, qv, kv, vv, ov, ctx, options); }
};

TEST(Validation, ValidCallIsAccepted) {
  Call c;
  EXPECT_NO_THROW(c.run());
  EXPECT_TRUE(c.ctx.defined());
}

TEST(Validation, ShapesOfQkvMustBeEqual) {
  {
    Call c;
    c.k = make(128);  // N differs
    c.kv = c.k;
    expect_invalid([&] { c.run(); }, {"k"}, "128", {"shape", "match", "equal", "same"});
  }
  {
    Call c;
    c.v = make(256, 2, 16);  // D differs
    c.vv = c.v;
    expect_invalid([&] { c.run(); }, {"v"}, "16", {"shape", "match", "equal", "same"});
  }
  {
    Call c;
    c.k = make(256, 3);  // H differs from v's
    c.kv = c.k;
    expect_invalid([&] { c.run(); }, {"v"}, "2", {"shape", "match", "equal", "same"});
  }
  {
    Call c;  // k and v with 3 heads: grouped-query attention needs kv_heads dividing heads = 2
    c.k = make(256, 3);
    c.kv = c.k;
    c.v = make(256, 3);
    c.vv = c.v;
    expect_invalid([&] { c.run(); }, {"kv_heads"}, "3", {"divide"});
  }
}

TEST(Validation, RankMustBeFour) {
  Call c;
  for (TensorView* t : {&c.qv, &c.kv, &c.vv, &c.ov}) {
    t->rank = 3;
    t->shape = {256, 2, 8, 0};
    t->strides = {16, 8, 1, 0};
  }
  expect_invalid([&] { c.run(); }, {"q"}, "", {"rank"});
}

TEST(Validation, PoolPowerOfTwoAtLeastTwo) {
  for (int pool : {3, 6, 1, 0, -2}) {
    Call c;
    c.config.pool = pool;
    expect_invalid([&] { c.run(); }, {"pool"}, std::to_string(pool),
                   {"power of two", "power of 2", ">= 2", "at least 2"});
  }
}

TEST(Validation, TopkPositiveMultipleOf128) {
  for (int topk : {100, 129, 0, -128}) {
    Call c;
    c.config.topk = topk;
    expect_invalid([&] { c.run(); }, {"topk"}, std::to_string(topk),
                   {"multiple of", "positive", "> 0"});
  }
}

TEST(Validation, LevelsAtLeastOne) {
  for (int levels : {0, -3}) {
    Call c;
    c.config.levels = levels;
    expect_invalid([&] { c.run(); }, {"levels"}, std::to_string(levels),
                   {">= 1", "at least 1", "positive"});
  }
}

TEST(Validation, UnsupportedDtypes) {
  for (DType dtype : {DType::kInt32, DType::kBFloat16, DType::kFloat16, DType::kInt64}) {
    Call c;
    c.q = make(256, 2, 8, dtype), c.k = make(256, 2, 8, dtype), c.v = make(256, 2, 8, dtype),
    c.out = make(256, 2, 8, dtype);
    c.qv = c.q, c.kv = c.k, c.vv = c.v, c.ov = c.out;
    expect_invalid([&] { c.run(); }, {"q", "dtype"}, lighthouse::dtype_name(dtype),
                   {"float32", "supported"});
  }
}

TEST(Validation, DtypesMustMatch) {
  {
    Call c;
    c.k = make(256, 2, 8, DType::kFloat64);
    c.kv = c.k;
    expect_invalid([&] { c.run(); }, {"k.dtype"}, "float64", {"float32", "dtype", "match", "same"});
  }
  {
    Call c;
    c.out = make(256, 2, 8, DType::kFloat64);
    c.ov = c.out;
    expect_invalid([&] { c.run(); }, {"out.dtype"}, "float64",
                   {"float32", "dtype", "match", "same"});
  }
}

TEST(Validation, DevicesMustMatch) {
  // A host buffer labelled as a CUDA tensor: rejected before any memory is touched.
  Call c;
  c.vv.device = Device::kCUDA;
  expect_invalid([&] { c.run(); }, {"v.device"}, "cuda", {"device", "cpu", "same"});
}

TEST(Validation, UnitStrideOnHeadDim) {
  Call c;
  Tensor wide = make(256, 2, 16);
  TensorView strided = wide;
  strided.shape[3] = 8;
  strided.strides[3] = 2;
  c.kv = strided;
  expect_invalid([&] { c.run(); }, {"k.stride(3)"}, "2", {"stride"});
}

TEST(Validation, CheckFiniteRejectsNanAndInf) {
  const double bad[] = {std::nan(""), std::numeric_limits<double>::infinity(),
                        -std::numeric_limits<double>::infinity()};
  for (int which = 0; which < 3; ++which) {
    for (double x : bad) {
      Call c;
      c.options.check_finite = true;
      Tensor& t = which == 0 ? c.q : which == 1 ? c.k : c.v;
      t.data<float>()[123] = static_cast<float>(x);
      expect_invalid([&] { c.run(); },
                     {which == 0   ? "q"
                      : which == 1 ? "k"
                                   : "v"},
                     "", {"finite", "nan", "inf"});
    }
  }
  // Without the option a NaN input is not an error (the caller chose not to pay for the scan).
  Call c;
  c.v.data<float>()[5] = std::nanf("");
  EXPECT_NO_THROW(c.run());
}

TEST(Validation, ThreadsNotNegative) {
  Call c;
  c.options.threads = -1;
  expect_invalid([&] { c.run(); }, {"threads"}, "-1", {">= 0"});
}

TEST(Validation, OutShapeMustMatch) {
  Call c;
  c.out = make(256, 2, 4);
  c.ov = c.out;
  expect_invalid([&] { c.run(); }, {"out"}, "4", {"shape", "match", "equal", "same"});
}

// A valid forward, then backward with one argument broken.
struct BackwardCall {
  Call fwd;
  Tensor dout = make(256), dq = make(256), dk = make(256), dv = make(256);
  TensorView doutv = dout, dqv = dq, dkv = dk, dvv = dv;
  lighthouse::Options options{};
  BackwardCall() { fwd.run(); }
  void run() { lighthouse::backward(fwd.ctx, doutv, dqv, dkv, dvv, options); }
};

TEST(Validation, BackwardValidCallIsAccepted) {
  BackwardCall c;
  EXPECT_NO_THROW(c.run());
}

TEST(Validation, BackwardNeedsADefinedContext) {
  BackwardCall c;
  const Context undefined;
  expect_invalid([&] { lighthouse::backward(undefined, c.doutv, c.dqv, c.dkv, c.dvv); },
                 {"ctx", "context"}, "", {"forward", "defined", "empty"});
}

TEST(Validation, BackwardShapesMustMatch) {
  {
    BackwardCall c;
    c.dout = make(128);
    c.doutv = c.dout;
    expect_invalid([&] { c.run(); }, {"dout"}, "128", {"shape", "match", "equal", "same"});
  }
  {
    BackwardCall c;
    c.dk = make(256, 1);
    c.dkv = c.dk;
    expect_invalid([&] { c.run(); }, {"dk"}, "1", {"shape", "match", "equal", "same"});
  }
}

TEST(Validation, BackwardDtypeMustMatchForward) {
  BackwardCall c;
  c.dout = make(256, 2, 8, DType::kFloat64);
  c.doutv = c.dout;
  expect_invalid([&] { c.run(); }, {"dout.dtype"}, "float64",
                 {"float32", "dtype", "match", "same"});
}

TEST(Validation, BackwardCheckFiniteRejectsNan) {
  BackwardCall c;
  c.options.check_finite = true;
  c.dout.data<float>()[7] = std::nanf("");
  expect_invalid([&] { c.run(); }, {"dout"}, "", {"finite", "nan"});
}

}  // namespace
