// Golden cases produced by the original authors' implementation on an H200 (tests/data): the
// CPU backend (float32) and the float64 reference must select the same indices and reproduce
// the outputs and gradients to float32 rounding (relative L2 error < 1e-5). The norm scorer's
// cases (tests/data/golden) and the dilated scorer's (tests/data/golden-dilated: config.json names
// the scorer and the dilation) run through the same tests; the CPU's dilated scorer runs its
// float32 attention stage, so its scores differ from the original's in the last bits, and the
// selected indices must still be identical.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
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
    const auto indices = lhtest::select(p.config, p.shape, p.q, p.k, p.v);
    EXPECT_TRUE(indices == g.indices) << g.name << ": the reference selects other indices";
    const auto out = lhtest::attend(p.config, p.shape, p.q, p.k, p.v, g.indices);
    const auto grads = lhtest::backward(p.config, p.shape, p.q, p.k, p.v, g.indices, p.dout);
    expect_all_close(g, "reference", out, grads.dq, grads.dk, grads.dv);
  });
}

// The loader reads each case's scorer into its Config (d1: dilated, dilation 4; g2, g5: norm),
// reads every folder of a list, and leaves out a case of a scorer the library does not implement
// instead of comparing it wrongly.
TEST(Golden, LoaderReadsTheScorer) {
  const fs::path data = fs::path(LIGHTHOUSE_SOURCE_DIR) / "tests" / "data";
  ASSERT_TRUE(fs::exists(data / "golden-dilated" / "d1" / "config.json")) << data;
  std::vector<std::string> names;
  for (const fs::path& dir : lhtest::golden_case_dirs({data / "golden-dilated", data / "golden"})) {
    names.push_back(dir.filename().string());
  }
  EXPECT_EQ(names, (std::vector<std::string>{"d1", "g2", "g5"}));
  const lhtest::GoldenCase d1 = lhtest::load_golden(data / "golden-dilated" / "d1");
  EXPECT_EQ(d1.config.scorer, lighthouse::Scorer::kDilated);
  EXPECT_EQ(d1.config.dilation, 4);
  EXPECT_EQ(lhtest::load_golden(data / "golden" / "g2").config.scorer, lighthouse::Scorer::kNorm);

  const fs::path root =
      fs::temp_directory_path() / ("lh_golden_scorer_" + std::to_string(::getpid()));
  fs::create_directories(root / "x1");
  std::ofstream(root / "x1" / "config.json") << R"({"scorer": "learned"})";
  EXPECT_TRUE(lhtest::golden_case_dirs({root}).empty()) << "a case of an unknown scorer was kept";
  fs::remove_all(root);
}

// The default roots hold the dilated case, and with the norm scorer the original's dilated
// selection is not reproduced: the loader must not fall back to norms (and the comparison above
// can fail).
TEST(Golden, DilatedCaseNeedsTheDilatedScorer) {
  std::vector<fs::path> dirs;
  for (const fs::path& dir : lhtest::golden_case_dirs()) {
    if (lhtest::load_golden(dir).config.scorer == lighthouse::Scorer::kDilated) dirs.push_back(dir);
  }
  LHTEST_REQUIRE_GOLDEN(dirs);
  for_each_golden(dirs, [](const lhtest::GoldenCase& g) {
    lhtest::Problem p = problem_of(g);
    p.config.scorer = lighthouse::Scorer::kNorm;
    EXPECT_FALSE(lhtest::select(p.config, p.shape, p.q, p.k, p.v) == g.indices) << g.name;
  });
}

}  // namespace
