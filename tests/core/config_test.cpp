// lighthouse::validate(Config): the rules on levels, pool, topk and scale alone.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "lighthouse/config.hpp"
#include "lighthouse/error.hpp"
#include "support/invalid_argument.hpp"
#include "support/reference.hpp"

namespace {

using lhtest::expect_invalid;
using lighthouse::Config;

TEST(Config, AcceptsValidConfigurations) {
  EXPECT_NO_THROW(lighthouse::validate(Config{}));
  for (int levels : {1, 2, 3, 4, 6}) {
    for (int pool : {2, 4, 8, 16, 64}) {
      for (int topk : {128, 256, 384, 2048, 128 * 1000}) {
        EXPECT_NO_THROW(lighthouse::validate(lhtest::make_config(levels, pool, topk)))
            << levels << " " << pool << " " << topk;
      }
    }
  }
  EXPECT_NO_THROW(lighthouse::validate(lhtest::make_config(3, 4, 2048, 0.125)));
}

TEST(Config, LevelsAtLeastOne) {
  for (int levels : {0, -1, -100}) {
    expect_invalid([&] { lighthouse::validate(lhtest::make_config(levels, 4, 2048)); }, {"levels"},
                   std::to_string(levels), {">= 1", "at least 1", "positive"});
  }
}

TEST(Config, PoolPowerOfTwoAtLeastTwo) {
  for (int pool : {3, 5, 6, 12, 100}) {
    expect_invalid([&] { lighthouse::validate(lhtest::make_config(3, pool, 2048)); }, {"pool"},
                   std::to_string(pool), {"power of two", "power of 2"});
  }
  for (int pool : {1, 0, -2, -4}) {  // 1 = 2^0 is a power of two, but below 2
    expect_invalid([&] { lighthouse::validate(lhtest::make_config(3, pool, 2048)); }, {"pool"},
                   std::to_string(pool), {">= 2", "at least 2", "power of two"});
  }
}

TEST(Config, TopkPositiveMultipleOf128) {
  for (int topk : {100, 129, 200, 1000, 64}) {
    expect_invalid([&] { lighthouse::validate(lhtest::make_config(3, 4, topk)); }, {"topk"},
                   std::to_string(topk), {"multiple of"});
  }
  for (int topk : {0, -128, -256}) {
    expect_invalid([&] { lighthouse::validate(lhtest::make_config(3, 4, topk)); }, {"topk"},
                   std::to_string(topk),
                   {"positive", "> 0", ">= 128", "at least 128", "multiple of"});
  }
}

TEST(Config, ScaleFiniteAndPositive) {
  const double bad[] = {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity()};
  for (double scale : bad) {
    SCOPED_TRACE(scale);
    expect_invalid([&] { lighthouse::validate(lhtest::make_config(3, 4, 2048, scale)); }, {"scale"},
                   "", {"finite", "positive", "> 0"});
  }
}

// The selection rules by name, both ways; an unknown name (or an enum value cast from an integer)
// is an error that names the parameter and lists the choices.
TEST(Config, SelectionNamesRoundTripAndBadOnesListTheChoices) {
  using lighthouse::Selection;
  for (Selection s : {Selection::kOriginal, Selection::kCausal, Selection::kStride}) {
    EXPECT_EQ(lighthouse::parse_selection(lighthouse::selection_name(s)), s);
    Config c;
    c.selection = s;
    EXPECT_NO_THROW(lighthouse::validate(c));
  }
  EXPECT_STREQ(lighthouse::selection_name(Selection::kStride), "stride");
  for (const char* bad : {"strided", "Stride", "", "causal,stride"}) {
    expect_invalid([&] { lighthouse::parse_selection(bad, "--selection"); }, {"--selection"}, bad,
                   {"must be original, causal or stride"});
  }
  Config c;
  c.selection = static_cast<Selection>(3);
  expect_invalid([&] { lighthouse::validate(c); }, {"selection"}, "3",
                 {"must be original, causal or stride"});
}

}  // namespace
