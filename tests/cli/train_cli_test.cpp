// `lighthouse train` end to end: a tiny two-stage run writes its metrics and summary; bad flags
// exit 2 naming the flag, value and rule, and leave no metrics file.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/cli_run.hpp"
#include "train/language_model.hpp"
#include "train/presets.hpp"

namespace fs = std::filesystem;

namespace {

using Result = lhtest::CliResult;
using lhtest::read_file;

class TrainCli : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return dir_ / name; }
  // `env`: variable assignments put before the command ("OPENBLAS_NUM_THREADS=2").
  Result run(const std::string& args, const std::string& env = "") const {
    return lhtest::run_cli(dir_.path(), "train " + args, env);
  }
  lhtest::TempDir dir_{"lighthouse-train-cli"};
};

// The CPU model explicitly: these are CPU tests, also where a GPU would be picked by default.
constexpr const char* kTiny =
    "--device cpu --stage1-steps 2 --stage2-steps 2 --seq 256 --levels 2 --pool 2 --topk 128 "
    "--dim 16 --layers 2 --heads 2 --corpus-tokens 20k --eval-every 1 --threads 1 "
    "--sgemm-size 64";

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
  const nlohmann::json& summary = lines.back();
  EXPECT_GT(summary["stage1"]["attention_fraction"]["lighthouse"].get<double>(), 0.0);
  EXPECT_EQ(summary["stage2"]["attention_fraction"]["lighthouse"].get<double>(), 0.0);
  // The matmul rate as a share of the SGEMM measured in the run, and the count baselines.
  for (const char* stage : {"stage1", "stage2"}) {
    EXPECT_NEAR(
        summary[stage]["matmul_of_sgemm"].get<double>(),
        summary[stage]["matmul_gflops"].get<double>() / summary["sgemm_gflops"].get<double>(),
        1e-12);
  }
  EXPECT_GT(summary["unigram_loss"].get<double>(), summary["bigram_loss"].get<double>());
  EXPECT_NE(r.out.find("of SGEMM"), std::string::npos) << r.out;
}

TEST_F(TrainCli, BadFlagsNameTheFlagAndExit2WithoutOutput) {
  const std::string metrics = " --metrics '" + path("m.jsonl") + "'";
  struct Case {
    std::string args, expect;
  };
  const std::vector<Case> cases = {
      {"--seq 0", "--seq = 0"},
      {"--lr -1", "--lr = -1"},
      {"--decay exp", "--decay = exp: must be cosine, linear, constant or wsd"},
      {"--cooldown 0", "--cooldown = 0: must be in (0, 1]"},
      {"--init-std -1", "--init-std = -1"},
      {"--dim 30 --heads 4", "--dim = 30"},
      {"--heads 4 --kv-heads 3", "--kv-heads = 3: must divide heads = 4"},
      {"--stage1-steps 0 --stage2-steps 0", "--stage2-steps = 0"},
      {"--dense-layers 0,9", "--dense-layers = 9"},
      {"--heldout 0.9", "--heldout = 0.9"},
      {"--beta2 1", "--beta2 = 1"},
      {"--far-queries 0.5", "--far-queries = 0.5: needs the built-in --corpus recall"},
      {"--corpus recall --far-queries 2", "--far-queries = 2"},
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
      run("--device cpu --stage1-steps 0 --stage2-steps 3 --seq 64 --dim 16 --layers 1 --heads 2 "
          "--threads 1 --heldout 0.2 --sgemm-size 0 --data '" +
          path("tiny.txt") + "'");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("16 training tokens, 4 held-out"), std::string::npos) << r.out;
}

std::vector<nlohmann::json> read_jsonl(const std::string& file) {
  std::ifstream in(file);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// step -> loss, and the final dense evaluation, from a metrics file.
std::vector<std::pair<int, double>> step_losses(const std::vector<nlohmann::json>& lines) {
  std::vector<std::pair<int, double>> out;
  for (const auto& j : lines) {
    if (j["type"] == "step") out.emplace_back(j["step"].get<int>(), j["loss"].get<double>());
  }
  return out;
}

TEST_F(TrainCli, ResumeContinuesBitExactlyAndRejectsDamagedCheckpoints) {
  const std::string base = std::string(kTiny) + " --stage2-steps 3 --eval-every 0 --sgemm-size 0";
  const Result whole = run(base + " --save '" + path("ck") + "' --save-every 1 --metrics '" +
                           path("whole.jsonl") + "'");
  ASSERT_EQ(whole.status, 0) << whole.err;
  const auto all = read_jsonl(path("whole.jsonl"));
  const auto expected = step_losses(all);
  ASSERT_EQ(expected.size(), 5u);
  for (int from : {1, 3}) {  // stage 1 ends after step 2: resume before and after the switch
    const std::string metrics = path("resumed" + std::to_string(from) + ".jsonl");
    const Result r = run(base + " --resume '" + path("ck/step-0000000" + std::to_string(from)) +
                         "' --metrics '" + metrics + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("resumed from"), std::string::npos) << r.out;
    const auto lines = read_jsonl(metrics);
    const auto losses = step_losses(lines);
    const std::vector<std::pair<int, double>> rest(expected.begin() + from, expected.end());
    EXPECT_EQ(losses, rest);
    EXPECT_EQ(lines.back()["final_dense_eval_loss"], all.back()["final_dense_eval_loss"]);
  }

  // Damaged or mismatched checkpoints: exit 2, the file and the problem named, no crash.
  fs::copy(path("ck/step-00000002"), path("bad"));
  std::string bytes = read_file(path("bad/model.safetensors"));
  bytes[bytes.size() - 100] ^= 1;
  std::ofstream(path("bad/model.safetensors"), std::ios::binary | std::ios::trunc) << bytes;
  Result r = run(base + " --resume '" + path("bad") + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("model.safetensors: checksum mismatch"), std::string::npos) << r.err;

  fs::resize_file(path("ck/step-00000002/optimizer.safetensors"), 100);
  r = run(base + " --resume '" + path("ck/step-00000002") + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("optimizer.safetensors: truncated"), std::string::npos) << r.err;

  r = run(base + " --dim 32 --resume '" + path("ck") + "'");  // the latest: step 5
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("step-00000005/model.safetensors: model config differs: dim = 16"),
            std::string::npos)
      << r.err;

  r = run(base + " --resume '" + path("nothing") + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("nothing: is not a checkpoint folder"), std::string::npos) << r.err;
}

// What README.md promises for the CPU trainer: on one machine and build, every run gives the same
// bits, whatever --threads and OpenBLAS's own thread setting (the trainer runs BLAS
// single-threaded inside its one OpenMP pool). Across CPUs nothing is promised: OpenBLAS picks
// its kernels by CPU, and the build uses -march=native.
TEST_F(TrainCli, SameLossesOnEveryRunForAnyThreadCount) {
  std::string tiny = kTiny;
  tiny.erase(tiny.find("--threads 1"), std::string("--threads 1").size());
  const std::string base = tiny + " --sgemm-size 0";
  // Every loss of a run: the steps', the evaluations' and the final one.
  auto losses = [&](const std::string& name, const std::string& args, const std::string& env) {
    const Result r = run(base + " " + args + " --metrics '" + path(name) + "'", env);
    EXPECT_EQ(r.status, 0) << r.err;
    std::vector<double> all;
    for (const auto& j : read_jsonl(path(name))) {
      if (j["type"] == "step") all.push_back(j["loss"].get<double>());
      if (j["type"] == "eval") all.push_back(j["dense_loss"].get<double>());
      if (j["type"] == "summary") all.push_back(j["final_dense_eval_loss"].get<double>());
    }
    return all;
  };
  const std::vector<double> first = losses("a.jsonl", "--threads 1", "OPENBLAS_NUM_THREADS=1");
  ASSERT_EQ(first.size(), 9u);  // 4 steps, 4 evaluations, the final loss
  EXPECT_EQ(losses("b.jsonl", "--threads 1", "OPENBLAS_NUM_THREADS=1"), first) << "a second run";
  EXPECT_EQ(losses("c.jsonl", "--threads 2", "OPENBLAS_NUM_THREADS=2"), first) << "2 threads";
  EXPECT_EQ(losses("d.jsonl", "--threads 3", "OPENBLAS_NUM_THREADS=3 OMP_NUM_THREADS=1"), first)
      << "3 threads";
  // The comparison can fail: another seed gives other losses.
  EXPECT_NE(losses("e.jsonl", "--threads 1 --seed 2", ""), first);
}

TEST_F(TrainCli, ConfigFileSetsFlagsAndTheCommandLineOverridesIt) {
  std::ofstream(path("run.json")) << R"({"stage1-steps": 1, "stage2-steps": 1, "seq": 256,
    "levels": 2, "pool": 2, "topk": 128, "dim": 16, "layers": 2, "heads": 2, "lr": 0.002,
    "dense-layers": [1], "untied": true, "corpus-tokens": "20k", "--threads": 1,
    "sgemm-size": 0, "eval-every": 0, "quiet": true})";
  const Result r =
      run("--config '" + path("run.json") + "' --lr 0.001 --metrics '" + path("m.jsonl") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");  // "quiet": true
  const auto config = read_jsonl(path("m.jsonl")).front();
  EXPECT_EQ(config["stage1_steps"], 1);
  EXPECT_EQ(config["seq"], 256);
  EXPECT_EQ(config["lighthouse"]["topk"], 128);
  EXPECT_EQ(config["dense_layers"], nlohmann::json({1}));
  EXPECT_EQ(config["model"]["tied"], false);
  EXPECT_EQ(config["lr"], 0.001);  // the flag wins over the file's 0.002

  struct Case {
    std::string json, expect;
  };
  const std::vector<Case> cases = {
      {R"({"stage1-stepz": 3})", "unknown key \"stage1-stepz\""},
      {R"({"config": "x.json"})", "unknown key \"config\""},
      {R"({"untied": 1})", "wants true or false"},
      {R"({"seq": [1, {}]})", "expected a number or a string"},
      {R"({"seq": null})", "expected a number or a string"},
      {R"({"seq": "zero"})", "--seq = zero"},
      {R"([1, 2])", "must hold one JSON object"},
      {R"({"seq": 4)", "not valid JSON"},
  };
  for (const Case& c : cases) {
    std::ofstream(path("bad.json"), std::ios::trunc) << c.json;
    const Result bad = run("--config '" + path("bad.json") + "'");
    EXPECT_EQ(bad.status, 2) << c.json << "\n" << bad.err;
    EXPECT_NE(bad.err.find(c.expect), std::string::npos) << c.json << "\n" << bad.err;
  }
  const Result missing = run("--config '" + path("missing.json") + "'");
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("--config = " + path("missing.json") + ": cannot open"),
            std::string::npos)
      << missing.err;
}

TEST_F(TrainCli, LeakProbeAtTheStageSwitchAndPasskeyAtTheEnd) {
  const Result r = run(std::string(kTiny) + " --leak-probe --leak-samples 4 --passkey-trials 1 " +
                       "--passkey-lengths 64,128 --metrics '" + path("m.jsonl") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("leak probe at step 2 (4 positions"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("passkey accuracy (dense attention): "), std::string::npos) << r.out;
  const auto lines = read_jsonl(path("m.jsonl"));
  int probes = 0;
  for (const auto& j : lines) probes += j["type"] == "leak_probe";
  EXPECT_EQ(probes, 1);
  const auto& summary = lines.back();
  EXPECT_EQ(summary["leak_probe"]["samples"], 4);
  EXPECT_EQ(summary["passkey"]["cells"].size(), 10u);  // 2 lengths x 5 depths
  // Issue 13: depths from 10% to 90% of the context, never at its edges.
  std::vector<double> depths;
  for (const auto& c : summary["passkey"]["cells"]) depths.push_back(c["depth"].get<double>());
  EXPECT_EQ(depths.front(), 0.1);
  EXPECT_EQ(*std::max_element(depths.begin(), depths.end()), 0.9);
  const Result bad = run(std::string(kTiny) + " --passkey-lengths 32");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--passkey-lengths = 32"), std::string::npos) << bad.err;
}

TEST_F(TrainCli, PlotDrawsTrainingAndEvalCurvesWithTheSwitch) {
  ASSERT_EQ(
      run(std::string(kTiny) + " --passkey-trials 0 --metrics '" + path("a.jsonl") + "'").status,
      0);
  const std::string cli = std::string("'") + LIGHTHOUSE_CLI_PATH + "' plot ";
  ASSERT_EQ(std::system((cli + "'" + path("a.jsonl") + "' '" + path("a.jsonl") + "' --out '" +
                         path("p.svg") + "' > /dev/null")
                            .c_str()),
            0);
  const std::string svg = read_file(path("p.svg"));
  EXPECT_NE(svg.find("a train"), std::string::npos);
  EXPECT_NE(svg.find("a dense eval"), std::string::npos);
  EXPECT_NE(svg.find("a: switch to dense"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(svg.find("clip-path"), std::string::npos);  // no cap asked: nothing clipped
  // --y-max caps the loss axis halfway up the uncapped one: its top tick comes down, and the
  // curves are clipped to the plot area.
  auto y_ticks = [](const std::string& text) {
    std::vector<double> ticks;
    const std::regex tick("text-anchor=\"end\">([^<]*)<");
    for (std::sregex_iterator it(text.begin(), text.end(), tick), end; it != end; ++it) {
      ticks.push_back(std::stod((*it)[1].str()));
    }
    return ticks;
  };
  const std::vector<double> full = y_ticks(svg);
  ASSERT_GE(full.size(), 3u);
  const double cap = (full.front() + full.back()) / 2;
  ASSERT_EQ(std::system((cli + "'" + path("a.jsonl") + "' --y-max " + std::to_string(cap) +
                         " --out '" + path("c.svg") + "' > /dev/null")
                            .c_str()),
            0);
  const std::string capped = read_file(path("c.svg"));
  EXPECT_NE(capped.find("clip-path=\"url(#plot-area)\""), std::string::npos);
  const std::vector<double> low = y_ticks(capped);
  ASSERT_FALSE(low.empty());
  EXPECT_LT(low.back(), full.back());
  EXPECT_GE(low.back(), cap);
  const int zero = std::system((cli + "'" + path("a.jsonl") + "' --y-max 0 --out '" +
                                path("z.svg") + "' 2> '" + path("zerr") + "'")
                                   .c_str());
  EXPECT_EQ(WEXITSTATUS(zero), 2);
  EXPECT_NE(read_file(path("zerr")).find("--y-max = 0"), std::string::npos)
      << read_file(path("zerr"));
  EXPECT_FALSE(fs::exists(path("z.svg")));
  std::ofstream(path("bad.jsonl")) << "{\"type\": \"step\"}\n";
  const int raw = std::system(
      (cli + "'" + path("bad.jsonl") + "' --out '" + path("q.svg") + "' 2> '" + path("err") + "'")
          .c_str());
  EXPECT_EQ(WEXITSTATUS(raw), 2);
  EXPECT_NE(read_file(path("err")).find("bad.jsonl: line 1 is not a metrics record"),
            std::string::npos)
      << read_file(path("err"));
  EXPECT_FALSE(fs::exists(path("q.svg")));
}

TEST_F(TrainCli, CompareRunsThreeArmsSideBySide) {
  const Result r = run(std::string(kTiny) + " --passkey-trials 1 --passkey-lengths 64 " +
                       "--leak-samples 4 --compare --compare-dir '" + path("cmp") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* row :
       {"final held-out loss (dense)", "tok/s stage 1 (lighthouse)", "loss jump at the switch",
        "leak probe (loss diff, 95% CI)", "passkey accuracy", "attention share, stage 1",
        "matmul GFLOP/s (of SGEMM), dense", "unigram / bigram baseline",
        "long-range answers loss (dense)", "stage-1 end held-out, own attention",
        "stage-1 end held-out, dense", "seconds stage 1 / dense steps", "original->dense",
        "causal->dense", "run 3/3", "table: ", "plot: "}) {
    EXPECT_NE(r.out.find(row), std::string::npos) << row << "\n" << r.out;
  }
  const auto dense = read_jsonl(path("cmp/dense.jsonl"));
  EXPECT_EQ(dense.front()["stage1_steps"], 0);
  EXPECT_EQ(dense.front()["stage2_steps"], 4);  // the same token budget: 2 + 2 steps
  for (const char* arm : {"original", "causal"}) {
    const auto lh = read_jsonl(path("cmp/" + std::string(arm) + ".jsonl"));
    EXPECT_EQ(lh.front()["stage1_steps"], 2) << arm;
    EXPECT_EQ(lh.front()["seed"], dense.front()["seed"]) << arm;
    EXPECT_EQ(lh.front()["lighthouse"]["selection"], arm);
  }
  const std::string svg = read_file(path("cmp/compare.svg"));
  EXPECT_NE(svg.find("original: switch to dense"), std::string::npos);
  EXPECT_NE(svg.find("causal: switch to dense"), std::string::npos);

  // compare.json: one object per arm, in order, with what the table shows.
  const nlohmann::json table = nlohmann::json::parse(read_file(path("cmp/compare.json")));
  ASSERT_EQ(table["arms"].size(), 3u);
  EXPECT_EQ(table["tokens_per_run"], 4 * 256);
  const char* names[] = {"dense", "original", "causal"};
  for (int i = 0; i < 3; ++i) {
    const nlohmann::json& a = table["arms"][i];
    EXPECT_EQ(a["arm"], names[i]);
    EXPECT_TRUE(a["final_dense_loss"].is_number()) << names[i];
    EXPECT_TRUE(a["passkey"]["accuracy"].is_number()) << names[i];
    EXPECT_EQ(a.contains("leak_probe"), i > 0) << names[i];
    EXPECT_EQ(a.contains("stage1_end"), i > 0) << names[i];
    EXPECT_EQ(a.contains("jump"), i > 0) << names[i];
  }
  EXPECT_EQ(table["arms"][1]["leak_probe"]["samples"], 4);
  EXPECT_EQ(table["arms"][0]["stage2"]["steps"], 4);
  EXPECT_EQ(table["arms"][2]["stage1"]["steps"], 2);

  EXPECT_EQ(run(std::string(kTiny) + " --stage1-steps 0 --compare").status, 2);
}

TEST_F(TrainCli, CompareRunsTheArmsAskedAndRejectsBadListsBeforeWriting) {
  const Result r = run(std::string(kTiny) + " --passkey-trials 0 --leak-samples 4 --compare " +
                       "--arms causal,dense --compare-dir '" + path("two") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("causal->dense"), std::string::npos);
  EXPECT_EQ(r.out.find("original->dense"), std::string::npos);
  EXPECT_TRUE(fs::exists(path("two/causal.jsonl")));
  EXPECT_FALSE(fs::exists(path("two/original.jsonl")));
  const nlohmann::json table = nlohmann::json::parse(read_file(path("two/compare.json")));
  ASSERT_EQ(table["arms"].size(), 2u);
  EXPECT_EQ(table["arms"][0]["arm"], "causal");

  for (const char* bad : {"dense,dense", "lighthouse", "dense,"}) {
    const Result b = run(std::string(kTiny) + " --compare --arms '" + bad + "' --compare-dir '" +
                         path("bad") + "'");
    EXPECT_EQ(b.status, 2) << bad;
    EXPECT_NE(b.err.find("--arms = "), std::string::npos) << b.err;
    EXPECT_FALSE(fs::exists(path("bad"))) << bad;
  }
}

TEST_F(TrainCli, DeviceCudaWithoutTheCudaModelExits2AndWritesNothing) {
  if (lighthouse::train::cuda_model_available()) {
    GTEST_SKIP() << "this build runs --device cuda here (the GPU tests cover it)";
  }
  const std::string outputs = " --metrics '" + path("m.jsonl") + "' --save '" + path("ck") +
                              "' --save-initial --dump-batches '" + path("b.npy") + "'";
  for (const std::string& extra :
       std::vector<std::string>{"", " --compare --compare-dir '" + path("cmp") + "'"}) {
    const Result r = run(std::string(kTiny) + " --device cuda" + outputs + extra);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find("--device = cuda: "), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
    for (const char* name : {"m.jsonl", "ck", "b.npy", "cmp"}) {
      EXPECT_FALSE(fs::exists(path(name))) << name << extra;
    }
  }
  // Flags that only a GPU run can honour are refused on the CPU, naming the flag.
  for (const std::string& flag :
       std::vector<std::string>{"--precision bf16", "--recompute layer", "--deterministic off"}) {
    const Result r = run(std::string(kTiny) + " " + flag);
    EXPECT_EQ(r.status, 2) << flag;
    EXPECT_NE(r.err.find(flag.substr(0, flag.find(' ')) + " = "), std::string::npos) << r.err;
  }
  const Result bad = run(std::string(kTiny) + " --device tpu");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--device = tpu: must be cpu, cuda or auto"), std::string::npos)
      << bad.err;
}

nlohmann::json dry_run_config(const std::string& out) {
  return nlohmann::json::parse(out.substr(0, out.find('\n')));
}

// The trainer trains with the causal selection unless asked (the library's default stays the
// original's); --selection original still gives the original rule, anything else is refused.
TEST_F(TrainCli, SelectionDefaultsToCausalAndOriginalIsAFlagAway) {
  Result r = run(std::string(kTiny) + " --dry-run");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(dry_run_config(r.out)["lighthouse"]["selection"], "causal");
  r = run(std::string(kTiny) + " --selection original --dry-run");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(dry_run_config(r.out)["lighthouse"]["selection"], "original");
  r = run(std::string(kTiny) + " --selection leaky --dry-run");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--selection = leaky"), std::string::npos) << r.err;
}

TEST_F(TrainCli, PresetsAreListedParsedAndOverridden) {
  const Result help = run("--help");
  ASSERT_EQ(help.status, 0);
  for (const auto& p : lighthouse::train::presets()) {
    EXPECT_NE(help.out.find(p.name + " "), std::string::npos) << p.name;
    EXPECT_NE(help.out.find(p.summary), std::string::npos) << p.name;
    const Result r = run("--preset " + p.name + " --device cpu --dry-run");
    ASSERT_EQ(r.status, 0) << p.name << "\n" << r.err;
    const nlohmann::json c = dry_run_config(r.out);
    EXPECT_EQ(c["type"], "config");
    for (const auto& [flag, value] : p.flags) {
      if (flag == "layers" || flag == "dim" || flag == "heads") {
        EXPECT_EQ(c["model"][flag].get<int>(), std::stoi(value)) << p.name << " " << flag;
      }
    }
    EXPECT_NE(r.out.find("FLOPs per step: stage 1 "), std::string::npos) << r.out;
  }
  Result r = run("--preset paper-530m --device cpu --dry-run");
  nlohmann::json c = dry_run_config(r.out);
  EXPECT_EQ(c["seq"], 98304);
  EXPECT_EQ(c["dense_layers"], nlohmann::json({0, 1, 28, 29}));
  EXPECT_EQ(c["model"]["hidden"], 1536);
  EXPECT_EQ(c["lighthouse"]["topk"], 1536);
  EXPECT_EQ(c["device"]["recompute"], "none");  // the preset's recompute is for the GPU
  // The GPU main job's model (scripts/gpu-main-job): 32K context on the recall corpus, 80/20
  // split, the last layer dense in stage 1.
  r = run("--preset gpu-main --device cpu --dry-run");
  ASSERT_EQ(r.status, 0) << r.err;
  c = dry_run_config(r.out);
  EXPECT_EQ(c["seq"], 32768);
  EXPECT_EQ(c["data"], "built-in recall");
  EXPECT_EQ(c["model"]["dim"], 256);
  EXPECT_EQ(c["stage1_steps"], 2000);
  EXPECT_EQ(c["stage2_steps"], 500);
  EXPECT_EQ(c["dense_layers"], nlohmann::json({3}));
  // The 8-layer study (PRESET=gpu-study scripts/gpu-main-job): the first and the last layer dense
  // in stage 1, far queries in every recall document.
  r = run("--preset gpu-study --device cpu --dry-run");
  ASSERT_EQ(r.status, 0) << r.err;
  c = dry_run_config(r.out);
  EXPECT_EQ(c["seq"], 32768);
  EXPECT_EQ(c["model"]["layers"], 8);
  EXPECT_EQ(c["dense_layers"], nlohmann::json({0, 7}));
  EXPECT_EQ(c["data"], "built-in recall");
  EXPECT_EQ(c["far_queries"], 1.0);
  // Flags on the command line and in --config override the preset.
  r = run("--preset gpu-8x1024 --layers 2 --seq 64k --device cpu --dry-run");
  ASSERT_EQ(r.status, 0) << r.err;
  c = dry_run_config(r.out);
  EXPECT_EQ(c["model"]["layers"], 2);
  EXPECT_EQ(c["model"]["dim"], 1024);
  EXPECT_EQ(c["seq"], 65536);
  std::ofstream(path("p.json")) << R"({"preset": "tiny", "seq": 512})";
  r = run("--config '" + path("p.json") + "' --device cpu --dry-run");
  ASSERT_EQ(r.status, 0) << r.err;
  c = dry_run_config(r.out);
  EXPECT_EQ(c["seq"], 512);
  EXPECT_EQ(c["model"]["dim"], 64);
  r = run("--preset huge");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(
      r.err.find("--preset = huge: must be one of tiny, small, gpu-8x1024, gpu-main, gpu-study, "
                 "paper-530m"),
      std::string::npos)
      << r.err;
  r = run("--preset paper-530m --device cpu --recompute layer --dry-run");  // explicit: refused
  EXPECT_EQ(r.status, 2);
}

TEST_F(TrainCli, EveryStepReportsThroughputMfuMemoryAndTheSplit) {
  const Result r =
      run(std::string(kTiny) + " --passkey-trials 0 --metrics '" + path("m.jsonl") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  // llm.c's progress line: step | loss | norm | lr | ms | MFU | tok/s.
  for (const char* field :
       {"] stage 1 | loss ", " | norm ", " | lr ", " ms | MFU ", "(dense-eq ", "tok/s ETA"}) {
    EXPECT_NE(r.err.find(field), std::string::npos) << field << "\n" << r.err;
  }
  EXPECT_NE(r.out.find("dense-eq MFU  peak memory"), std::string::npos) << r.out;
  int steps = 0;
  for (const auto& j : read_jsonl(path("m.jsonl"))) {
    if (j["type"] != "step") continue;
    ++steps;
    EXPECT_GT(j["tok_per_s"].get<double>(), 0.0);
    EXPECT_GT(j["mfu"]["executed"].get<double>(), 0.0);  // against the SGEMM measured first
    EXPECT_GT(j["mfu"]["dense_equivalent"].get<double>(), 0.0);
    EXPECT_GT(j["peak_memory_bytes"].get<double>(), 0.0);
    for (const char* k : {"dense_attention", "lighthouse_attention", "matmul", "other"}) {
      EXPECT_TRUE(j["split_seconds"].contains(k)) << k;
    }
  }
  EXPECT_EQ(steps, 4);
}

// --init-from: a new run (its own --seq, step 1 onward, a fresh optimizer) from a checkpoint's
// weights, for every --compare arm too; another model shape or --resume with it is exit 2.
TEST_F(TrainCli, InitFromStartsAFreshRunFromACheckpointsWeights) {
  const std::string base = std::string(kTiny) + " --eval-every 0 --sgemm-size 0 --passkey-trials 0";
  ASSERT_EQ(run(base + " --stage2-steps 6 --save '" + path("ck") + "'").status, 0);
  const std::string longer = base + " --seq 512 --metrics '";
  ASSERT_EQ(run(longer + path("scratch.jsonl") + "'").status, 0);
  const Result warm = run(longer + path("warm.jsonl") + "' --init-from '" + path("ck") + "'");
  ASSERT_EQ(warm.status, 0) << warm.err;
  const auto lines = read_jsonl(path("warm.jsonl"));
  EXPECT_NE(lines.front()["init_from"].get<std::string>().find("step-00000008"), std::string::npos)
      << lines.front();
  EXPECT_EQ(lines.front()["seq"], 512);
  const auto from_scratch = step_losses(read_jsonl(path("scratch.jsonl")));
  const auto from_weights = step_losses(lines);
  ASSERT_EQ(from_weights.size(), 4u);
  EXPECT_EQ(from_weights.front().first, 1);
  // The trained weights start far below the seed's initial ones (ln 257 = 5.55).
  EXPECT_LT(from_weights.front().second, from_scratch.front().second - 0.5)
      << from_weights.front().second << " vs " << from_scratch.front().second;

  const Result compare = run(base + " --compare --arms dense,causal --quiet --compare-dir '" +
                             path("cmp") + "' --init-from '" + path("ck") + "'");
  ASSERT_EQ(compare.status, 0) << compare.err;
  for (const char* arm : {"dense", "causal"}) {
    const auto arm_lines = read_jsonl(path(std::string("cmp/") + arm + ".jsonl"));
    EXPECT_TRUE(arm_lines.front().contains("init_from")) << arm;
    EXPECT_LT(step_losses(arm_lines).front().second, from_scratch.front().second - 0.5) << arm;
  }

  Result r = run(base + " --dim 32 --init-from '" + path("ck") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("model config differs: dim = 16 in the checkpoint, 32 in this run"),
            std::string::npos)
      << r.err;
  r = run(base + " --init-from '" + path("ck") + "' --resume '" + path("ck") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--init-from"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cannot be combined with --resume"), std::string::npos) << r.err;
}

TEST_F(TrainCli, CheckpointOfAnotherShapeNamesTheTensorAndBothShapes) {
  const std::string base = std::string(kTiny) + " --stage2-steps 1 --eval-every 0 --sgemm-size 0 " +
                           "--passkey-trials 0 --save '" + path("ck") + "'";
  ASSERT_EQ(run(base + " --save-initial").status, 0);
  EXPECT_TRUE(fs::exists(path("ck/step-00000000/model.safetensors")));
  Result r = run(base + " --dim 32 --resume '" + path("ck/step-00000000") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("model config differs: dim = 16 in the checkpoint, 32 in this run; tensor "
                       "embedding is [257, 16] in the checkpoint, the model needs [257, 32]"),
            std::string::npos)
      << r.err;
  r = run(base + " --hidden 64 --resume '" + path("ck") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("tensor layers.0.w13 is [16, 96] in the checkpoint, the model needs "
                       "[16, 128]"),
            std::string::npos)
      << r.err;
  r = run(std::string(kTiny) + " --save-initial");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--save-initial = true: needs --save DIR"), std::string::npos) << r.err;
}

}  // namespace
