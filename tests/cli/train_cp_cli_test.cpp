// `lighthouse train --cp W` on the CPU: a run over two thread ranks writes one metrics file with
// the same records as without --cp (and the first step's loss to the bit); a checkpoint it
// writes resumes without --cp; the rules of context parallelism exit 2 naming the flag and
// write nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/cli_run.hpp"

namespace fs = std::filesystem;

namespace {

using Result = lhtest::CliResult;

// Two Lighthouse steps (L2 p2 K512: 4 tiles, whole tiles in each of 4 chunks), two dense; 1024
// rows per rank keep the first forward's products in the whole batch's BLAS calls (bitwise).
constexpr const char* kTiny =
    "--device cpu --stage1-steps 2 --stage2-steps 2 --seq 2048 --levels 2 --pool 2 --topk 512 "
    "--selection original --dim 32 --layers 2 --heads 2 --corpus-tokens 20k --eval-every 2 "
    "--threads 1 --sgemm-size 0 --passkey-trials 1";

class TrainCpCli : public ::testing::Test {
 protected:
  Result run(const std::string& args) const {
    return lhtest::run_cli(dir_.path(), "train " + args);
  }
  std::string path(const std::string& name) const { return dir_ / name; }
  lhtest::TempDir dir_{"lighthouse-train-cp-cli"};
};

std::vector<nlohmann::json> records(const std::string& file) {
  std::ifstream in(file);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::vector<double> step_losses(const std::vector<nlohmann::json>& lines) {
  std::vector<double> out;
  for (const auto& j : lines) {
    if (j["type"] == "step") out.push_back(j["loss"].get<double>());
  }
  return out;
}

TEST_F(TrainCpCli, TwoRanksWriteOneMetricsFileLikeOneRank) {
  const Result one = run(std::string(kTiny) + " --metrics '" + path("one.jsonl") + "'");
  ASSERT_EQ(one.status, 0) << one.err;
  const Result two = run(std::string(kTiny) + " --cp 2 --metrics '" + path("two.jsonl") +
                         "' --save '" + path("ck") + "'");
  ASSERT_EQ(two.status, 0) << two.err;
  const auto a = records(path("one.jsonl")), b = records(path("two.jsonl"));
  ASSERT_EQ(a.size(), b.size());  // written once (rank 0), not once per rank
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i]["type"], b[i]["type"]) << i;
  const auto la = step_losses(a), lb = step_losses(b);
  ASSERT_EQ(la.size(), 4u);
  ASSERT_EQ(lb.size(), 4u);
  EXPECT_EQ(la[0], lb[0]);  // the first forward: the same bits
  // Then float32 rounding of the gradient sums, amplified by AdamW (tests/train/
  // context_parallel_train_test.cpp, kTolerance).
  for (std::size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(lb[i], la[i], 1e-3 * la[i]) << i;
  // One progress output: the summary once.
  const auto count = [](const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count(two.out, "final held-out loss"), count(one.out, "final held-out loss"));

  // The checkpoint of --cp 2 resumes without --cp (and the run is then complete: nothing left).
  const Result resumed = run(std::string(kTiny) + " --resume '" + path("ck") + "'");
  ASSERT_EQ(resumed.status, 0) << resumed.err;
}

TEST_F(TrainCpCli, RulesOfContextParallelismExit2AndWriteNothing) {
  const std::string outputs = " --metrics '" + path("m.jsonl") + "' --save '" + path("ck") + "'";
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      // The trainer's default selection is causal: say which flag to pass.
      {"--cp 2 --selection causal", "--selection = causal"},
      {"--cp 2 --selection causal", "pass --selection original"},
      {"--cp 2 --selection stride", "--selection = stride"},
      {"--cp 3", "--cp = 3: must divide the number of heads"},
      {"--cp 2 --topk 256 --seq 512",
       "--cp = 2: each of the 2 x cp = 4 chunks must hold whole tiles"},
      {"--cp 2 --seq 2050 --stage1-steps 0", "--seq = 2050"},
      {"--cp 2 --kv-heads 1", "--kv-heads = 1"},
      {"--cp 2 --scorer dilated", "--scorer = dilated"},
      {"--cp -1", "--cp = -1"},
      {"--cp 2 --compare", "--cp = 2: cannot be combined with --compare"},
  };
  for (const Case& c : cases) {
    const Result r = run(std::string(kTiny) + " " + c.args + outputs);
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_FALSE(fs::exists(path("m.jsonl"))) << c.args;
    EXPECT_FALSE(fs::exists(path("ck"))) << c.args;
  }
}

}  // namespace
