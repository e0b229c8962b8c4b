// Golden cases produced by the original authors' implementation on an H200: the CPU backend
// (float32) and the float64 reference must select the same indices and reproduce the
// outputs and gradients to float32 rounding (relative L2 error < 1e-5). The norm scorer's cases
// live under LIGHTHOUSE_GOLDEN_DIR, the dilated scorer's under LIGHTHOUSE_GOLDEN_DILATED_DIR
// (their config.json names the scorer and the dilation).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lighthouse/lighthouse.hpp"
#include "lighthouse/npy.hpp"
#include "support/library_run.hpp"
#include "support/reference.hpp"

namespace {

namespace fs = std::filesystem;
using lighthouse::DType;

constexpr double kTolerance = 1e-5;

struct Golden {
  std::string name;
  lhtest::Problem problem;
  std::vector<std::int32_t> indices;
  std::vector<double> out, dq, dk, dv;
};

std::vector<double> load_floats(const fs::path& file, const lhtest::Shape& shape) {
  const lighthouse::NpyArray a = lighthouse::read_npy(file.string());
  EXPECT_EQ(a.dtype, DType::kFloat32) << file;
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{shape.B, shape.N, shape.H, shape.D})) << file;
  if (a.dtype != DType::kFloat32 || a.numel() != shape.numel()) return {};
  return std::vector<double>(a.data<float>(), a.data<float>() + a.numel());
}

Golden load(const fs::path& dir) {
  std::ifstream file(dir / "config.json");
  const nlohmann::json json = nlohmann::json::parse(file);
  Golden g;
  g.name = dir.filename().string();
  g.problem.config = {.levels = json.at("levels").get<int>(),
                      .pool = json.at("pool").get<int>(),
                      .topk = json.at("topk").get<int>(),
                      .scale = {}};
  g.problem.config.scorer = lighthouse::parse_scorer(json.value("scorer", std::string("norm")));
  g.problem.config.dilation = json.value("dilation", 4);
  g.problem.shape = {json.at("batch").get<std::int64_t>(), json.at("seq_len").get<std::int64_t>(),
                     json.at("heads").get<std::int64_t>(), json.at("head_dim").get<std::int64_t>()};
  const lhtest::Shape& s = g.problem.shape;
  g.problem.q = load_floats(dir / "q.npy", s);
  g.problem.k = load_floats(dir / "k.npy", s);
  g.problem.v = load_floats(dir / "v.npy", s);
  g.problem.dout = load_floats(dir / "dout.npy", s);
  g.out = load_floats(dir / "out.npy", s);
  g.dq = load_floats(dir / "dq.npy", s);
  g.dk = load_floats(dir / "dk.npy", s);
  g.dv = load_floats(dir / "dv.npy", s);
  const lighthouse::NpyArray idx = lighthouse::read_npy((dir / "indices.npy").string());
  EXPECT_EQ(idx.dtype, DType::kInt32);
  EXPECT_EQ(idx.shape.size(), 3u);
  if (idx.dtype == DType::kInt32) {
    g.indices.assign(idx.data<std::int32_t>(), idx.data<std::int32_t>() + idx.numel());
  }
  return g;
}

// Every folder under `root` that holds a config.json, in name order.
std::vector<fs::path> golden_dirs(const char* root_dir = LIGHTHOUSE_GOLDEN_DIR) {
  std::vector<fs::path> dirs;
  const fs::path root(root_dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return dirs;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (entry.is_directory() && fs::exists(entry.path() / "config.json")) {
      dirs.push_back(entry.path());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

#define SKIP_WITHOUT_GOLDEN_IN(dirs, root, option)                                        \
  if ((dirs).empty()) {                                                                   \
    std::fprintf(stderr,                                                                  \
                 "WARNING: no golden cases under %s -- the comparison with the original " \
                 "implementation was NOT run\n",                                          \
                 root);                                                                   \
    GTEST_SKIP() << "no golden cases under " root " (configure with -D" option            \
                    "=...): NOT CHECKED AGAINST THE ORIGINAL";                            \
  }
#define SKIP_WITHOUT_GOLDEN(dirs) \
  SKIP_WITHOUT_GOLDEN_IN(dirs, LIGHTHOUSE_GOLDEN_DIR, "LIGHTHOUSE_GOLDEN_DIR")
#define SKIP_WITHOUT_DILATED_GOLDEN(dirs) \
  SKIP_WITHOUT_GOLDEN_IN(dirs, LIGHTHOUSE_GOLDEN_DILATED_DIR, "LIGHTHOUSE_GOLDEN_DILATED_DIR")

void expect_close(const char* what, const Golden& g, const std::vector<double>& got,
                  const std::vector<double>& want, const char* who) {
  const double err = lhtest::rel_l2(got, want);
  std::printf("[ golden   ] %s %-9s %-4s rel L2 %.2e\n", g.name.c_str(), who, what, err);
  EXPECT_LT(err, kTolerance) << g.name << " " << who << " " << what;
}

// A run's four outputs against the original's.
void expect_all_close(const Golden& g, const char* who, const std::vector<double>& out,
                      const std::vector<double>& dq, const std::vector<double>& dk,
                      const std::vector<double>& dv) {
  expect_close("out", g, out, g.out, who);
  expect_close("dq", g, dq, g.dq, who);
  expect_close("dk", g, dk, g.dk, who);
  expect_close("dv", g, dv, g.dv, who);
}

// Loads each case of `dirs` and runs check(case) on it; stops at a case without outputs.
template <typename Check>
void for_each_golden(const std::vector<fs::path>& dirs, Check check) {
  for (const fs::path& dir : dirs) {
    SCOPED_TRACE(dir.string());
    const Golden g = load(dir);
    ASSERT_FALSE(g.out.empty());
    check(g);
  }
}

TEST(Golden, LibraryFloat32MatchesOriginal) {
  const std::vector<fs::path> dirs = golden_dirs();
  SKIP_WITHOUT_GOLDEN(dirs);
  for_each_golden(dirs, [](const Golden& g) {
    const lhtest::Outputs lib = lhtest::run_library(g.problem, DType::kFloat32);
    EXPECT_EQ(lib.indices.size(), g.indices.size());
    EXPECT_TRUE(lib.indices == g.indices) << g.name << ": selected indices differ";
    expect_all_close(g, "library", lib.out, lib.dq, lib.dk, lib.dv);
  });
}

// Validates the reference itself: it is the standard for every other CPU test.
TEST(Golden, ReferenceMatchesOriginal) {
  const std::vector<fs::path> dirs = golden_dirs();
  SKIP_WITHOUT_GOLDEN(dirs);
  for_each_golden(dirs, [](const Golden& g) {
    const lhtest::Problem& p = g.problem;
    const auto indices = lhtest::select(p.config, p.shape, p.q, p.k, p.v);
    EXPECT_TRUE(indices == g.indices) << g.name << ": the reference selects other indices";
    const auto out = lhtest::attend(p.config, p.shape, p.q, p.k, p.v, g.indices);
    const auto grads = lhtest::backward(p.config, p.shape, p.q, p.k, p.v, g.indices, p.dout);
    expect_all_close(g, "reference", out, grads.dq, grads.dk, grads.dv);
  });
}

// The dilated scorer's cases (the original's DilatedLighthouseScorer with fp32 SDPA): the CPU
// backend's scorer runs its float32 attention stage, so its scores differ from the original's in
// the last bits; the selected indices must still be identical.
TEST(GoldenDilated, LibraryFloat32MatchesOriginal) {
  const std::vector<fs::path> dirs = golden_dirs(LIGHTHOUSE_GOLDEN_DILATED_DIR);
  SKIP_WITHOUT_DILATED_GOLDEN(dirs);
  for_each_golden(dirs, [](const Golden& g) {
    ASSERT_EQ(g.problem.config.scorer, lighthouse::Scorer::kDilated) << g.name;
    const lhtest::Outputs lib = lhtest::run_library(g.problem, DType::kFloat32);
    EXPECT_EQ(lib.indices.size(), g.indices.size());
    EXPECT_TRUE(lib.indices == g.indices) << g.name << ": selected indices differ";
    expect_all_close(g, "library", lib.out, lib.dq, lib.dk, lib.dv);
  });
}

// The float64 reference's dilated scorer against the original's selection.
TEST(GoldenDilated, ReferenceMatchesOriginal) {
  const std::vector<fs::path> dirs = golden_dirs(LIGHTHOUSE_GOLDEN_DILATED_DIR);
  SKIP_WITHOUT_DILATED_GOLDEN(dirs);
  for_each_golden(dirs, [](const Golden& g) {
    const lhtest::Problem& p = g.problem;
    const auto indices = lhtest::select(p.config, p.shape, p.q, p.k, p.v);
    EXPECT_TRUE(indices == g.indices) << g.name << ": the reference selects other indices";
    const auto out = lhtest::attend(p.config, p.shape, p.q, p.k, p.v, g.indices);
    const auto grads = lhtest::backward(p.config, p.shape, p.q, p.k, p.v, g.indices, p.dout);
    expect_all_close(g, "reference", out, grads.dq, grads.dk, grads.dv);
  });
}

// The golden loader must not fall back to the norm scorer for the dilated cases: with norms the
// original's dilated selection is not reproduced (a check that the comparison above can fail).
TEST(GoldenDilated, NormScorerSelectsOtherIndices) {
  const std::vector<fs::path> dirs = golden_dirs(LIGHTHOUSE_GOLDEN_DILATED_DIR);
  SKIP_WITHOUT_DILATED_GOLDEN(dirs);
  for_each_golden(dirs, [](const Golden& g) {
    lhtest::Problem p = g.problem;
    p.config.scorer = lighthouse::Scorer::kNorm;
    EXPECT_FALSE(lhtest::select(p.config, p.shape, p.q, p.k) == g.indices) << g.name;
  });
}

}  // namespace
