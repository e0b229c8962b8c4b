// The `lighthouse` binary with the modes of issue 14: the scorer flags (--scorer, --dilation) on
// plan and attention, and their usage errors (status 2, one line naming the flag, no output).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lighthouse/lighthouse.hpp"
#include "lighthouse/npy.hpp"
#include "support/cli_run.hpp"

namespace fs = std::filesystem;

namespace {

using Result = lhtest::CliResult;
using lhtest::read_file;

class TempDir : public lhtest::TempDir {
 public:
  TempDir() : lhtest::TempDir("lighthouse-shapes-test") {}
};

Result run_cli(const TempDir& dir, const std::string& args) {
  return lhtest::run_cli(dir.path(), args);
}

// A float32 [B, N, H, D] .npy of normal values, rows scaled by varied gains.
void write_input(const std::string& path, std::int64_t B, std::int64_t N, std::int64_t H,
                 std::int64_t D, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(static_cast<std::size_t>(B * N * H * D));
  for (std::size_t row = 0; row < x.size() / D; ++row) {
    const float gain = std::exp(0.5f * normal(gen));
    for (std::int64_t d = 0; d < D; ++d) x[row * D + d] = gain * normal(gen);
  }
  lighthouse::write_npy(path, lighthouse::DType::kFloat32, {B, N, H, D}, x.data());
}

std::vector<std::int32_t> read_indices(const std::string& path) {
  const lighthouse::NpyArray a = lighthouse::read_npy(path);
  return std::vector<std::int32_t>(a.data<std::int32_t>(), a.data<std::int32_t>() + a.numel());
}

TEST(CliShapes, PlanPrintsTheScorersFlops) {
  TempDir dir;
  const Result text = run_cli(dir,
                              "plan --seq 64k --levels 3 --pool 4 --topk 2048 --scorer dilated "
                              "--dilation 8 --heads 2 --head-dim 64");
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("scorer dilated (dilation 8)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("scorer FLOPs (dilated, dilation 8, forward only)"), std::string::npos)
      << text.out;
  const Result json = run_cli(dir,
                              "plan --seq 64k --levels 3 --pool 4 --topk 2048 --scorer dilated "
                              "--dilation 8 --heads 2 --head-dim 64 --json");
  ASSERT_EQ(json.status, 0) << json.err;
  const nlohmann::json j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["scorer"]["name"], "dilated");
  EXPECT_EQ(j["scorer"]["dilation"], 8);
  EXPECT_DOUBLE_EQ(j["scorer"]["flops"].get<double>(), 4.0 * 2 * 65536.0 * 65536.0 * 64 / 8);
}

TEST(CliShapes, DilatedScorerOnFilesAndItsUsageErrors) {
  TempDir dir;
  for (const char* name : {"q", "k", "v"})
    write_input(dir / (std::string(name) + ".npy"), 1, 1024, 2, 16, name[0]);
  const std::string inputs = "--q " + (dir / "q.npy") + " --k " + (dir / "k.npy") + " --v " +
                             (dir / "v.npy") + " --levels 3 --pool 2 --topk 128";
  const Result norm = run_cli(dir, "attention " + inputs + " --out " + (dir / "norm"));
  ASSERT_EQ(norm.status, 0) << norm.err;
  const Result dil = run_cli(
      dir, "attention " + inputs + " --scorer dilated --dilation 4 --out " + (dir / "dilated"));
  ASSERT_EQ(dil.status, 0) << dil.err;
  EXPECT_NE(read_indices(dir / "norm/indices.npy"), read_indices(dir / "dilated/indices.npy"));

  // A dilation that does not divide N pads N (any sequence length), a bad one is an error.
  const Result bad =
      run_cli(dir, "attention " + inputs + " --scorer dilated --dilation 0 --out " + (dir / "bad"));
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--dilation = 0"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir / "bad/out.npy"));
  const Result scorer = run_cli(dir, "attention " + inputs + " --scorer l2 --out " + (dir / "bad"));
  EXPECT_EQ(scorer.status, 2);
  EXPECT_NE(scorer.err.find("--scorer = l2: must be norm or dilated"), std::string::npos)
      << scorer.err;
  const Result zero = run_cli(dir, "plan --seq 1024 --levels 3 --pool 2 --topk 128 --dilation 0");
  EXPECT_EQ(zero.status, 2);
  EXPECT_NE(zero.err.find("--dilation = 0"), std::string::npos) << zero.err;
}

// Grouped-query attention from the files' shapes: k and v with fewer heads than q.
TEST(CliShapes, AttentionReadsTheKvHeadsFromTheFiles) {
  TempDir dir;
  write_input(dir / "q.npy", 1, 1024, 4, 16, 1);
  write_input(dir / "k.npy", 1, 1024, 2, 16, 2);
  write_input(dir / "v.npy", 1, 1024, 2, 16, 3);
  write_input(dir / "dout.npy", 1, 1024, 4, 16, 4);
  write_input(dir / "k3.npy", 1, 1024, 3, 16, 5);
  const std::string common = " --levels 3 --pool 2 --topk 128 --q " + (dir / "q.npy");
  const Result r =
      run_cli(dir, "attention" + common + " --k " + (dir / "k.npy") + " --v " + (dir / "v.npy") +
                       " --dout " + (dir / "dout.npy") + " --out " + (dir / "gqa"));
  ASSERT_EQ(r.status, 0) << r.err;
  const lighthouse::NpyArray idx = lighthouse::read_npy(dir / "gqa/indices.npy");
  lighthouse::Config config;
  config.levels = 3;
  config.pool = 2;
  config.topk = 128;
  const lighthouse::Plan plan = lighthouse::make_plan(config, 1, 1024, 4, 16, 2);
  EXPECT_EQ(idx.shape, (std::vector<std::int64_t>{1, 2, plan.S}));
  EXPECT_EQ(lighthouse::read_npy(dir / "gqa/dk.npy").shape,
            (std::vector<std::int64_t>{1, 1024, 2, 16}));
  EXPECT_EQ(lighthouse::read_npy(dir / "gqa/dq.npy").shape,
            (std::vector<std::int64_t>{1, 1024, 4, 16}));

  const Result bad = run_cli(dir, "attention" + common + " --k " + (dir / "k3.npy") + " --v " +
                                      (dir / "k3.npy") + " --out " + (dir / "bad"));
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--k = "), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("must divide heads = 4"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir / "bad/out.npy"));
  const Result mismatch = run_cli(dir, "attention" + common + " --k " + (dir / "k.npy") + " --v " +
                                           (dir / "k3.npy") + " --out " + (dir / "bad"));
  EXPECT_EQ(mismatch.status, 2);
  EXPECT_NE(mismatch.err.find("must equal --k's"), std::string::npos) << mismatch.err;
  const Result plan_text = run_cli(dir,
                                   "plan --seq 64k --levels 3 --pool 4 --topk 2048 --heads 8 "
                                   "--kv-heads 2");
  ASSERT_EQ(plan_text.status, 0) << plan_text.err;
  EXPECT_NE(plan_text.out.find("H = 8 (2 KV)"), std::string::npos) << plan_text.out;
  const Result plan_bad = run_cli(dir,
                                  "plan --seq 64k --levels 3 --pool 4 --topk 2048 --heads 8 "
                                  "--kv-heads 3");
  EXPECT_EQ(plan_bad.status, 2);
  EXPECT_NE(plan_bad.err.find("--kv-heads = 3: must divide heads = 8"), std::string::npos)
      << plan_bad.err;
}

}  // namespace

namespace {

// bench --kv-heads: the header and the JSON name the KV heads, the rows run in GQA form; a
// --kv-heads that does not divide --heads exits 2 naming the flag and the rule.
TEST(CliShapes, BenchTakesTheKvHeads) {
  TempDir dir;
  const fs::path json = dir / "b.json";
  const Result r = run_cli(dir,
                           "bench --seq 1024 --heads 4 --kv-heads 2 --head-dim 16 --levels 2 "
                           "--pool 2 --topk 256 --repeats 1 --warmup 0 --threads 1 --json '" +
                               json.string() + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("H=4 Hkv=2"), std::string::npos) << r.out;
  const nlohmann::json j = nlohmann::json::parse(read_file(json));
  EXPECT_EQ(j["config"]["kv_heads"], 2) << j.dump();
  const Result bad = run_cli(dir, "bench --seq 1024 --heads 4 --kv-heads 3");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--kv-heads = 3: must divide --heads = 4"), std::string::npos) << bad.err;
}

}  // namespace
