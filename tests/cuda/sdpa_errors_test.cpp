// Rejected calls: every rule of attention.hpp (and cuDNN's own, cudnn_attention.hpp) names the
// offending field. Validation runs before any CUDA call, so these tests need no GPU (the pointers
// below are never dereferenced).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "cuda/attention.hpp"
#include "lighthouse/error.hpp"
#include "support/attention_case.hpp"

namespace lighthouse::testing {
namespace {

// Aligned, non-null, never dereferenced: validation must reject the call before any use.
void* const kFake = reinterpret_cast<void*>(std::uintptr_t{1} << 20);
float* const kFakeStats = static_cast<float*>(kFake);

cuda::SdpaDesc valid_desc(DType dtype = DType::kBFloat16, std::int64_t d = 64) {
  return make_case(2, 2, 16, d, dtype, {}, 0).desc;
}

// Expects InvalidArgument naming `param` from both the forward and the backward.
template <typename Mutate>
void expect_rejected(const std::string& param, Mutate mutate, DType dtype = DType::kBFloat16,
                     std::int64_t d = 64) {
  cuda::SdpaDesc desc = valid_desc(dtype, d);
  const void* q = kFake;
  const void* k = kFake;
  const void* v = kFake;
  void* o = kFake;
  const void* dout = kFake;
  float* stats = kFakeStats;
  mutate(desc, q, k, v, o, dout, stats);
  try {
    cuda::sdpa_forward(desc, q, k, v, o, stats, nullptr);
    ADD_FAILURE() << "forward accepted a call that breaks the rule on " << param;
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.param(), param) << e.what();
  }
  try {
    cuda::sdpa_backward(desc, q, k, v, o, dout, stats, kFake, kFake, kFake, nullptr);
    ADD_FAILURE() << "backward accepted a call that breaks the rule on " << param;
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.param(), param) << e.what();
  }
}

using Q = const void*&;
using O = void*&;
using S = float*&;

TEST(SdpaErrors, NonPositiveDims) {
  expect_rejected("desc.b", [](cuda::SdpaDesc& d, Q, Q, Q, O, Q, S) { d.b = 0; });
  expect_rejected("desc.s", [](cuda::SdpaDesc& d, Q, Q, Q, O, Q, S) { d.s = -3; });
  expect_rejected("desc.d", [](cuda::SdpaDesc& d, Q, Q, Q, O, Q, S) { d.d = 0; });
}

TEST(SdpaErrors, BadScale) {
  expect_rejected("desc.scale", [](cuda::SdpaDesc& d, Q, Q, Q, O, Q, S) { d.scale = 0; });
  expect_rejected("desc.scale",
                  [](cuda::SdpaDesc& d, Q, Q, Q, O, Q, S) { d.scale = std::nan(""); });
}

TEST(SdpaErrors, UnsupportedDtype) {
  expect_rejected("desc.dtype",
                  [](cuda::SdpaDesc& d, Q, Q, Q, O, Q, S) { d.dtype = DType::kFloat64; });
  expect_rejected("desc.dtype",
                  [](cuda::SdpaDesc& d, Q, Q, Q, O, Q, S) { d.dtype = DType::kInt32; });
}

TEST(SdpaErrors, NullPointers) {
  expect_rejected("q", [](cuda::SdpaDesc&, Q q, Q, Q, O, Q, S) { q = nullptr; });
  expect_rejected("o", [](cuda::SdpaDesc&, Q, Q, Q, O o, Q, S) { o = nullptr; });
  expect_rejected("stats", [](cuda::SdpaDesc&, Q, Q, Q, O, Q, S s) { s = nullptr; });
  // The float32 path checks pointers too.
  expect_rejected(
      "v", [](cuda::SdpaDesc&, Q, Q, Q v, O, Q, S) { v = nullptr; }, DType::kFloat32);
}

TEST(SdpaErrors, CudnnNeedsAlignedPointers) {
  expect_rejected("k", [](cuda::SdpaDesc&, Q, Q k, Q, O, Q, S) {
    k = static_cast<const char*>(kFake) + 2;  // one bf16 element off
  });
}

TEST(SdpaErrors, CudnnHeadDim) {
  expect_rejected(
      "desc.d", [](cuda::SdpaDesc&, Q, Q, Q, O, Q, S) {}, DType::kBFloat16, 60);
  expect_rejected(
      "desc.d", [](cuda::SdpaDesc&, Q, Q, Q, O, Q, S) {}, DType::kFloat16, 264);
}

TEST(SdpaErrors, CudnnStrides) {
  expect_rejected("desc.q_stride", [](cuda::SdpaDesc& d, Q, Q, Q, O, Q, S) { d.q_stride[3] = 2; });
  expect_rejected("desc.v_stride", [](cuda::SdpaDesc& d, Q, Q, Q, O, Q, S) { d.v_stride[2] = 68; });
  expect_rejected("desc.o_stride", [](cuda::SdpaDesc& d, Q, Q, Q, O, Q, S) { d.o_stride[0] += 4; });
}

TEST(SdpaErrors, Fp32HeadDimLimit) {
  expect_rejected(
      "desc.d", [](cuda::SdpaDesc&, Q, Q, Q, O, Q, S) {}, DType::kFloat32, 520);
}

TEST(SdpaErrors, MessageNamesValueAndRule) {
  cuda::SdpaDesc desc = valid_desc(DType::kBFloat16, 60);
  try {
    cuda::sdpa_forward(desc, kFake, kFake, kFake, kFake, kFakeStats, nullptr);
    FAIL() << "d = 60 accepted for bf16";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.value(), "60");
    EXPECT_NE(std::string(e.what()).find("multiple of 8"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lighthouse::testing
