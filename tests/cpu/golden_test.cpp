// Golden cases produced by the original authors' implementation on an H200 (tests/data): the
// CPU backend (float32) and the float64 reference must select the same indices and reproduce
// the outputs and gradients to float32 rounding (relative L2 error < 1e-5).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "lighthouse/lighthouse.hpp"
#include "lighthouse/npy.hpp"
#include "support/golden.hpp"
#include "support/library_run.hpp"
#include "support/reference.hpp"

namespace {

namespace fs = std::filesystem;
using lighthouse::DType;

constexpr double kTolerance = 1e-5;

std::vector<double> widen(const std::vector<float>& x) {
  return {x.begin(), x.end()};
}

// A case's inputs as the problem the library and the reference run.
lhtest::Problem problem_of(const lhtest::GoldenCase& g) {
  return {g.config, g.shape, widen(g.q), widen(g.k), widen(g.v), widen(g.dout)};
}

void expect_close(const char* what, const lhtest::GoldenCase& g, const std::vector<double>& got,
                  const std::vector<float>& want, const char* who) {
  const double err = lhtest::rel_l2(got, widen(want));
  std::printf("[ golden   ] %s %-9s %-4s rel L2 %.2e\n", g.name.c_str(), who, what, err);
  EXPECT_LT(err, kTolerance) << g.name << " " << who << " " << what;
}

// A run's four outputs against the original's.
void expect_all_close(const lhtest::GoldenCase& g, const char* who, const std::vector<double>& out,
                      const std::vector<double>& dq, const std::vector<double>& dk,
                      const std::vector<double>& dv) {
  expect_close("out", g, out, g.out, who);
  expect_close("dq", g, dq, g.dq, who);
  expect_close("dk", g, dk, g.dk, who);
  expect_close("dv", g, dv, g.dv, who);
}

template <typename Check>
void for_each_golden(const std::vector<fs::path>& dirs, Check check) {
  for (const fs::path& dir : dirs) {
    SCOPED_TRACE(dir.string());
    check(lhtest::load_golden(dir));
  }
}

TEST(Golden, LibraryFloat32MatchesOriginal) {
  const std::vector<fs::path> dirs = lhtest::golden_case_dirs();
  LHTEST_REQUIRE_GOLDEN(dirs);
  for_each_golden(dirs, [](const lhtest::GoldenCase& g) {
    const lhtest::Outputs lib = lhtest::run_library(problem_of(g), DType::kFloat32);
    EXPECT_EQ(lib.indices.size(), g.indices.size());
    EXPECT_TRUE(lib.indices == g.indices) << g.name << ": selected indices differ";
    expect_all_close(g, "library", lib.out, lib.dq, lib.dk, lib.dv);
  });
}

// Validates the reference itself: it is the standard for every other CPU test.
TEST(Golden, ReferenceMatchesOriginal) {
  const std::vector<fs::path> dirs = lhtest::golden_case_dirs();
  LHTEST_REQUIRE_GOLDEN(dirs);
  for_each_golden(dirs, [](const lhtest::GoldenCase& g) {
    const lhtest::Problem p = problem_of(g);
    const auto indices = lhtest::select(p.config, p.shape, p.q, p.k);
    EXPECT_TRUE(indices == g.indices) << g.name << ": the reference selects other indices";
    const auto out = lhtest::attend(p.config, p.shape, p.q, p.k, p.v, g.indices);
    const auto grads = lhtest::backward(p.config, p.shape, p.q, p.k, p.v, g.indices, p.dout);
    expect_all_close(g, "reference", out, grads.dq, grads.dk, grads.dv);
  });
}

// The loader leaves out cases of a scorer the library does not implement (the dilated case d1
// lives in tests/data/golden-dilated for that reason) instead of comparing them wrongly, and
// reads every folder of a list.
TEST(Golden, LoaderSkipsOtherScorers) {
  const fs::path data = fs::path(LIGHTHOUSE_SOURCE_DIR) / "tests" / "data";
  ASSERT_TRUE(fs::exists(data / "golden-dilated" / "d1" / "config.json")) << data;
  EXPECT_TRUE(lhtest::golden_case_dirs({data / "golden-dilated"}).empty())
      << "the dilated case was taken for a norm-scorer case";
  std::vector<std::string> names;
  for (const fs::path& dir : lhtest::golden_case_dirs({data / "golden-dilated", data / "golden"})) {
    names.push_back(dir.filename().string());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"g2", "g5"}));
}

}  // namespace
