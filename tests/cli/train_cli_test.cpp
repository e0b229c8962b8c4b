// `lighthouse train` end to end: a tiny two-stage run writes its metrics and summary; bad flags
// exit 2 naming the flag, value and rule, and leave no metrics file.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace {

struct Result {
  int status = -1;
  std::string out, err;
};

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TrainCli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "lighthouse-train-cli-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  Result run(const std::string& args) const {
    const std::string out = path(".stdout"), err = path(".stderr");
    const std::string command = std::string("'") + LIGHTHOUSE_CLI_PATH + "' train " + args +
                                " > '" + out + "' 2> '" + err + "' < /dev/null";
    const int raw = std::system(command.c_str());
    Result r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }
  fs::path dir_;
};

constexpr const char* kTiny =
    "--stage1-steps 2 --stage2-steps 2 --seq 256 --levels 2 --pool 2 --topk 128 --dim 16 "
    "--layers 2 --heads 2 --corpus-tokens 20k --eval-every 1 --threads 1 --sgemm-size 64";

TEST_F(TrainCli, TwoStageRunWritesMetricsAndSummary) {
  const Result r = run(std::string(kTiny) + " --metrics '" + path("m.jsonl") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("final held-out loss (dense attention)"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("tok/s ETA"), std::string::npos) << r.err;
  std::ifstream in(path("m.jsonl"));
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  int steps = 0, evals = 0, stage1_evals_with_train_loss = 0;
  for (const auto& j : lines) {
    if (j["type"] == "step") {
      ++steps;
      EXPECT_EQ(j["stage"], j["step"].get<int>() <= 2 ? 1 : 2);
      EXPECT_GT(j["tok_per_s"].get<double>(), 0.0);
    }
    if (j["type"] == "eval") {
      ++evals;
      stage1_evals_with_train_loss += j.contains("train_attention_loss");
    }
  }
  EXPECT_EQ(lines.front()["type"], "config");
  EXPECT_EQ(lines.back()["type"], "summary");
  EXPECT_EQ(steps, 4);
  EXPECT_EQ(evals, 4);
  EXPECT_EQ(stage1_evals_with_train_loss, 2);
  EXPECT_GT(lines.back()["stage1"]["attention_fraction"]["lighthouse"].get<double>(), 0.0);
  EXPECT_EQ(lines.back()["stage2"]["attention_fraction"]["lighthouse"].get<double>(), 0.0);
}

TEST_F(TrainCli, BadFlagsNameTheFlagAndExit2WithoutOutput) {
  const std::string metrics = " --metrics '" + path("m.jsonl") + "'";
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {"--seq 0", "--seq = 0"},
      {"--lr -1", "--lr = -1"},
      {"--decay exp", "--decay = exp: must be cosine, linear or constant"},
      {"--dim 30 --heads 4", "--dim = 30"},
      {"--stage1-steps 0 --stage2-steps 0", "--stage2-steps = 0"},
      {"--seq 256 --levels 2 --pool 2 --topk 256", "--topk = 256"},
      {"--dense-layers 0,9", "--dense-layers = 9"},
      {"--heldout 0.9", "--heldout = 0.9"},
      {"--beta2 1", "--beta2 = 1"},
      {"--data '" + path("missing.txt") + "'", "missing.txt: cannot open"},
  };
  for (const Case& c : cases) {
    const Result r = run(c.args + metrics);
    EXPECT_EQ(r.status, c.args.find("--data") == 0 ? 1 : 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_FALSE(fs::exists(path("m.jsonl"))) << c.args;
  }
}

TEST_F(TrainCli, TrainsOnATextFileShorterThanASequence) {
  std::ofstream(path("tiny.txt")) << "hello, lighthouse!\n";
  const Result r =
      run("--stage1-steps 0 --stage2-steps 3 --seq 64 --dim 16 --layers 1 --heads 2 --threads 1 "
          "--heldout 0.2 --sgemm-size 0 --data '" +
          path("tiny.txt") + "'");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("16 training tokens, 4 held-out"), std::string::npos) << r.out;
}

}  // namespace
