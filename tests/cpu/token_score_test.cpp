// token_score: the exact definition of a token's score that the CPU and the GPU share
// (core/scores.hpp; the GPU's pyramid kernel sums chunks per lane and adds the lanes by a
// butterfly). Checked against a
// recursive restatement of the documented tree, for head dims that fill, split and pad chunks;
// the float64 reference's token_score (tests/support/reference.hpp) against the same.
#include "cpu/pyramid.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "support/reference.hpp"

namespace lighthouse::cpu {
namespace {

// Sum of squares of chunks [first, first + count) (count a power of two): the left half plus
// the right half; a chunk past the row is 0.
double tree(const std::vector<float>& row, std::int64_t first, std::int64_t count) {
  if (count > 1) return tree(row, first, count / 2) + tree(row, first + count / 2, count / 2);
  double sum = 0;
  const auto dim = static_cast<std::int64_t>(row.size());
  for (std::int64_t d = first * kScoreChunk; d < std::min(dim, (first + 1) * kScoreChunk); ++d) {
    sum += static_cast<double>(row[d]) * static_cast<double>(row[d]);
  }
  return sum;
}

float restated(const std::vector<float>& row) {
  const auto dim = static_cast<std::int64_t>(row.size());
  std::int64_t width = 1;
  while (width * kScoreChunk < dim) width *= 2;
  const float s = static_cast<float>(std::sqrt(tree(row, 0, width)));
  return std::isnan(s) ? -std::numeric_limits<float>::infinity() : s;
}

TEST(TokenScore, IsThePairwiseChunkTree) {
  std::mt19937 gen(5);
  // Wide exponents, so that the order of the additions shows in the double sums.
  std::uniform_real_distribution<float> mantissa(-1.f, 1.f);
  std::uniform_int_distribution<int> exponent(-30, 30);
  int differs_from_sequential = 0;
  for (std::int64_t dim : {1, 3, 4, 8, 12, 20, 36, 64, 96, 100, 128, 256, 520, 600}) {
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<float> row(static_cast<std::size_t>(dim));
      for (float& x : row) x = std::ldexp(mantissa(gen), exponent(gen));
      const float got = token_score(row.data(), dim);
      ASSERT_EQ(got, restated(row)) << "dim " << dim << ", trial " << trial;
      // The float64 reference's score (tests/support/reference.hpp) is the same function.
      const std::vector<double> wide(row.begin(), row.end());
      ASSERT_EQ(lhtest::token_score(wide.data(), dim), got) << "reference, dim " << dim;
      double sequential = 0;
      for (float x : row) sequential += static_cast<double>(x) * x;
      const std::int64_t chunks = (dim + kScoreChunk - 1) / kScoreChunk;
      std::int64_t width = 1;
      while (width < chunks) width *= 2;
      differs_from_sequential += sequential != tree(row, 0, width) ? 1 : 0;
    }
  }
  // The tree is a different order from the plain d-order sum: the test would notice a return to it.
  EXPECT_GT(differs_from_sequential, 0);
}

TEST(TokenScore, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> row(128, 0.f);
  EXPECT_EQ(token_score(row.data(), 128), 0.f);
  row[77] = 3.f;
  row[3] = 4.f;
  EXPECT_EQ(token_score(row.data(), 128), 5.f);
  row[100] = -inf;
  EXPECT_EQ(token_score(row.data(), 128), inf);
  row[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(token_score(row.data(), 128), -inf) << "NaN ranks last";
}

}  // namespace
}  // namespace lighthouse::cpu
