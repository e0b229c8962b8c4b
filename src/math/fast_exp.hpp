// exp2 for the softmax of the CPU attention kernel (and the trainer's), written as straight-line
// code without branches or library calls so that a loop calling it auto-vectorises (no
// -ffast-math needed).
//
// Method: x = n + f with n = round(x), f in [-0.5, 0.5]; 2^f is a near-minimax polynomial
// (Chebyshev fit: degree 6 for float, max error 2e-9; degree 11 for double, 3e-18), and 2^n is
// built directly in the exponent bits. Measured error: <= 1 ulp (float), <= 2 ulp (double), see
// tests/math/fast_exp_test.cpp.
//
// Inputs are clamped to [-(bias), +bias]: at the lower end the exponent field becomes 0, so every
// x <= -(bias + 0.5) - in particular -inf - gives exactly +0 (a masked or hopeless logit
// contributes nothing). Results below the smallest normal number may be flushed to 0, which the
// softmax never notices (the row maximum contributes 1). NaN inputs are not supported.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace lighthouse::cpu {

// a * b + c with one rounding where the target has FMA (the build uses ISO C++ mode, which turns
// off implicit contraction); elsewhere two roundings, still well inside the error budget.
template <typename T>
inline T fma_or_madd(T a, T b, T c) {
#if defined(__FMA__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

inline float fast_exp2(float x) {
  // Clamp with ternaries (maxps/minps); -inf becomes -127, whose 2^n below is exactly 0.
  x = x < -127.0f ? -127.0f : x;
  x = x > 127.0f ? 127.0f : x;
  // Round to nearest: adding 1.5 * 2^23 pushes the fraction out of the mantissa. Valid for
  // |x| < 2^22; the compiler may not fold it because this file is built without -ffast-math.
  constexpr float kRound = 12582912.0f;
  const float n = (x + kRound) - kRound;
  const float f = x - n;  // exact, in [-0.5, 0.5]
  float p = 1.546144469856912908e-4f;
  p = fma_or_madd(p, f, 1.340042817761583794e-3f);
  p = fma_or_madd(p, f, 9.618056678524638075e-3f);
  p = fma_or_madd(p, f, 5.550327226670302059e-2f);
  p = fma_or_madd(p, f, 2.402265092228875808e-1f);
  p = fma_or_madd(p, f, 6.931472067028325958e-1f);
  p = fma_or_madd(p, f, 1.0f);
  // 2^n for n in [-127, 127]: exponent field n + 127 in [0, 254]; field 0 is the value +0.
  const float scale = std::bit_cast<float>((static_cast<std::int32_t>(n) + 127) << 23);
  return p * scale;
}

inline double fast_exp2(double x) {
  x = x < -1023.0 ? -1023.0 : x;
  x = x > 1023.0 ? 1023.0 : x;
  constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
  const double n = (x + kRound) - kRound;
  const double f = x - n;
  double p = 4.455817908336064493e-10;
  p = fma_or_madd(p, f, 7.074194297288521006e-9);
  p = fma_or_madd(p, f, 1.017805708773394110e-7);
  p = fma_or_madd(p, f, 1.321543253591237617e-6);
  p = fma_or_madd(p, f, 1.525273384155677259e-5);
  p = fma_or_madd(p, f, 1.540353046372435421e-4);
  p = fma_or_madd(p, f, 1.333355814640647070e-3);
  p = fma_or_madd(p, f, 9.618129107587256668e-3);
  p = fma_or_madd(p, f, 5.550410866482162704e-2);
  p = fma_or_madd(p, f, 2.402265069591015957e-1);
  p = fma_or_madd(p, f, 6.931471805599453093e-1);
  p = fma_or_madd(p, f, 1.0);
  const double scale = std::bit_cast<double>((static_cast<std::int64_t>(n) + 1023) << 52);
  return p * scale;
}

}  // namespace lighthouse::cpu
