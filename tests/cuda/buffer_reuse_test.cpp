// Which caller buffers the CUDA backend borrows as scratch (cuda/buffer_reuse.hpp): address
// arithmetic only, so these tests need no GPU (the pointers are never dereferenced).
#include <gtest/gtest.h>

#include <cstdint>

#include "cuda/buffer_reuse.hpp"

namespace lighthouse::cuda {
namespace {

constexpr std::int64_t kB = 2, kN = 1024, kH = 4, kD = 64;
constexpr std::size_t kTensorBytes = kB * kN * kH * kD * 2;  // bf16

// A contiguous bf16 [B, N, H, D] view at `address` (never dereferenced).
TensorView at(std::uintptr_t address) {
  return TensorView::contiguous(reinterpret_cast<void*>(address), DType::kBFloat16, Device::kCUDA,
                                {kB, kN, kH, kD});
}

// Far apart, so that tensors placed at different slots never touch.
std::uintptr_t slot(int i) {
  return (std::uintptr_t{1} << 32) + static_cast<std::uintptr_t>(i) * (kTensorBytes + 4096);
}

const ByteSpan kNoContext{};

TEST(ByteSpan, CoversEveryElementWhateverTheStrides) {
  const TensorView t = at(slot(0));
  const ByteSpan s = span_of(t);
  EXPECT_EQ(s.lo, slot(0));
  EXPECT_EQ(s.hi, slot(0) + kTensorBytes);
  // A [B, N, H, D] view of a [B, H, N, D] buffer covers the same bytes.
  const TensorView permuted =
      TensorView::contiguous(reinterpret_cast<void*>(slot(0)), DType::kBFloat16, Device::kCUDA,
                             {kB, kH, kN, kD})
          .transposed(1, 2);
  EXPECT_EQ(span_of(permuted).lo, s.lo);
  EXPECT_EQ(span_of(permuted).hi, s.hi);
  // A negative stride reaches below data.
  TensorView reversed = t;
  reversed.strides[1] = -t.strides[1];
  reversed.data = reinterpret_cast<void*>(slot(1));
  EXPECT_EQ(span_of(reversed).lo, slot(1) - (kN - 1) * kH * kD * 2);
  EXPECT_EQ(span_of(reversed).hi, slot(1) + kH * kD * 2 * kB * kN - (kN - 1) * kH * kD * 2);
  // Touching is not overlapping; one shared byte is.
  EXPECT_FALSE(span_of(at(slot(0))).overlaps(span_of(reinterpret_cast<void*>(s.hi), 16)));
  EXPECT_TRUE(span_of(at(slot(0))).overlaps(span_of(reinterpret_cast<void*>(s.hi - 1), 16)));
  EXPECT_FALSE(ByteSpan{}.overlaps(s));
}

TEST(GradientScratch, BlocksGoWhereTheyFit) {
  const TensorView dout = at(slot(0)), dq = at(slot(1)), dk = at(slot(2)), dv = at(slot(3));
  EXPECT_EQ(choose_gradient_scratch(dout, dq, dk, dv, kNoContext, kTensorBytes / 2),
            GradientScratch::kTwoBlocks);
  EXPECT_EQ(choose_gradient_scratch(dout, dq, dk, dv, kNoContext, kTensorBytes / 2 + 256),
            GradientScratch::kOneBlock);
  EXPECT_EQ(choose_gradient_scratch(dout, dq, dk, dv, kNoContext, kTensorBytes),
            GradientScratch::kOneBlock);
  EXPECT_EQ(choose_gradient_scratch(dout, dq, dk, dv, kNoContext, kTensorBytes + 256),
            GradientScratch::kWorkspace);  // S > N (possible with L = 2, p = 2)
}

TEST(GradientScratch, FallsBackToTheWorkspace) {
  const TensorView dout = at(slot(0)), dq = at(slot(1)), dk = at(slot(2)), dv = at(slot(3));
  const std::size_t block = kTensorBytes / 4;
  // A strided (non-contiguous) gradient.
  const TensorView strided =
      TensorView::contiguous(reinterpret_cast<void*>(slot(4)), DType::kBFloat16, Device::kCUDA,
                             {kB, kH, kN, kD})
          .transposed(1, 2);
  EXPECT_EQ(choose_gradient_scratch(dout, strided, dk, dv, kNoContext, block),
            GradientScratch::kWorkspace);
  EXPECT_EQ(choose_gradient_scratch(dout, dq, dk, strided, kNoContext, block),
            GradientScratch::kWorkspace);
  // dout is dq, or starts in the gap before dv and runs into it.
  EXPECT_EQ(choose_gradient_scratch(dq, dq, dk, dv, kNoContext, block),
            GradientScratch::kWorkspace);
  const TensorView dout_into_dv = at(slot(3) - 2048);
  ASSERT_FALSE(span_of(dout_into_dv).overlaps(span_of(dk)));
  EXPECT_EQ(choose_gradient_scratch(dout_into_dv, dq, dk, dv, kNoContext, block),
            GradientScratch::kWorkspace);
  // dout strided over a buffer that contains dk.
  TensorView wide_dout = at(slot(2) - 2 * kH * kD);
  wide_dout.strides[1] *= 2;  // reaches well past dk
  EXPECT_EQ(choose_gradient_scratch(wide_dout, dq, dk, dv, kNoContext, block),
            GradientScratch::kWorkspace);
  // Two gradients overlapping each other.
  EXPECT_EQ(
      choose_gradient_scratch(dout, dq, at(slot(1) + kTensorBytes / 2), dv, kNoContext, block),
      GradientScratch::kWorkspace);
  EXPECT_EQ(choose_gradient_scratch(dout, dq, dk, dk, kNoContext, block),
            GradientScratch::kWorkspace);
  // A gradient overlapping the context.
  const ByteSpan context = span_of(reinterpret_cast<void*>(slot(2) + 4096), 1 << 20);
  EXPECT_EQ(choose_gradient_scratch(dout, dq, dk, dv, context, block), GradientScratch::kWorkspace);
  // The same buffers away from the context are used.
  EXPECT_EQ(choose_gradient_scratch(dout, dq, dk, dv, span_of(reinterpret_cast<void*>(slot(9)), 64),
                                    block),
            GradientScratch::kTwoBlocks);
}

TEST(OutHoldsScratch, OnlyWhenNothingReadSharesItsBytes) {
  const TensorView q = at(slot(0)), k = at(slot(1)), v = at(slot(2)), out = at(slot(3));
  EXPECT_TRUE(out_holds_scratch(q, k, v, out, kNoContext, kTensorBytes));
  EXPECT_FALSE(out_holds_scratch(q, k, v, out, kNoContext, kTensorBytes + 1));
  EXPECT_FALSE(out_holds_scratch(q, k, v, q, kNoContext, 64));  // attention written over q
  EXPECT_FALSE(out_holds_scratch(q, k, at(slot(3) + 16), out, kNoContext, 64));
  EXPECT_FALSE(
      out_holds_scratch(q, k, v, out, span_of(reinterpret_cast<void*>(slot(3) + 64), 64), 64));
  const TensorView strided =
      TensorView::contiguous(reinterpret_cast<void*>(slot(3)), DType::kBFloat16, Device::kCUDA,
                             {kB, kH, kN, kD})
          .transposed(1, 2);
  EXPECT_FALSE(out_holds_scratch(q, k, v, strided, kNoContext, 64));
}

}  // namespace
}  // namespace lighthouse::cuda
