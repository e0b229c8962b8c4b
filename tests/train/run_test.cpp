// run_training, the loop behind `lighthouse train`: the records and events of a run, per-step
// metrics, the step-0 checkpoint and resuming through run_training bit for bit, the batch dump
// against what the model really trained on, and --compare's arms and switch measurements.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lighthouse/npy.hpp"
#include "tiny_configs.hpp"
#include "train/compare.hpp"
#include "train/run.hpp"

namespace {

namespace fs = std::filesystem;
using namespace lighthouse::train;

// A CPU model that records the token batches its training forwards receive.
class Recording final : public LanguageModel {
 public:
  Recording(std::unique_ptr<LanguageModel> inner, std::vector<std::int32_t>* seen)
      : inner_(std::move(inner)), seen_(seen) {}
  const ModelConfig& config() const override { return inner_->config(); }
  lighthouse::Device device() const override { return inner_->device(); }
  const std::vector<ParamInfo>& params() const override { return inner_->params(); }
  void set_attention(std::vector<lighthouse::Config> c) override { inner_->set_attention(c); }
  const std::vector<lighthouse::Config>& attention() const override { return inner_->attention(); }
  double forward(const std::int32_t* in, const std::int32_t* tg, std::int64_t b,
                 std::int64_t n) override {
    seen_->insert(seen_->end(), in, in + b * n);
    seen_->insert(seen_->end(), tg, tg + b * n);
    return inner_->forward(in, tg, b, n);
  }
  void backward(double scale) override { inner_->backward(scale); }
  void zero_grad() override { inner_->zero_grad(); }
  double optimizer_step(double lr, double clip) override {
    return inner_->optimizer_step(lr, clip);
  }
  double evaluate(const std::int32_t* in, const std::int32_t* tg, std::int64_t b, std::int64_t n,
                  double* losses) override {
    return inner_->evaluate(in, tg, b, n, losses);
  }
  void logits_rows(const std::vector<std::int64_t>& rows, float* out) override {
    inner_->logits_rows(rows, out);
  }
  std::vector<std::vector<float>> read_params() const override { return inner_->read_params(); }
  void write_params(const std::vector<std::vector<float>>& v) override { inner_->write_params(v); }
  OptimizerState read_optimizer() const override { return inner_->read_optimizer(); }
  void write_optimizer(const OptimizerState& s) override { inner_->write_optimizer(s); }
  WorkTimes take_times() override { return inner_->take_times(); }

 private:
  std::unique_ptr<LanguageModel> inner_;
  std::vector<std::int32_t>* seen_;
};

class Run : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "lighthouse-run-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    data_ = generate_corpus(6000, 3, 1000);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  RunOptions options() {
    RunOptions o;
    o.config = lhtest::two_stage_config();  // 3 Lighthouse steps, 2 dense, accum 2
    o.config.schedule.warmup = 2;
    o.train = o.heldout = &data_;
    o.eval_every = 0;
    o.passkey_trials = 0;
    o.make_model = [this](const TrainConfig& c) -> std::unique_ptr<LanguageModel> {
      return std::make_unique<Recording>(
          make_cpu_model(c.model, c.seed, c.adamw, make_cpu_attention(1)), &seen_);
    };
    return o;
  }
  fs::path dir_;
  TokenStream data_;
  std::vector<std::int32_t> seen_;  // every training forward's inputs, then targets
};

// The training losses, then the final dense evaluation.
std::vector<double> losses(const RunReport& r) {
  std::vector<double> out;
  for (const auto& [step, loss] : r.losses) out.push_back(loss);
  out.push_back(r.evals.back().second.dense_loss);
  return out;
}

TEST_F(Run, RecordsEveryStepWithItsThroughputMfuMemoryAndSplit) {
  RunOptions o = options();
  o.peak = PeakRate{1e9, "a test peak", false};
  std::vector<nlohmann::json> records;
  std::vector<std::int64_t> steps, evals;
  bool finished = false;
  RunHooks hooks;
  hooks.record = [&](const std::string& j) { records.push_back(nlohmann::json::parse(j)); };
  hooks.step = [&](const StepMetrics& m) { steps.push_back(m.result.step); };
  hooks.evaluated = [&](std::int64_t step, const EvalResult&) { evals.push_back(step); };
  hooks.finished = [&](const RunReport&) { finished = true; };
  const RunReport report = run_training(o, hooks);
  EXPECT_TRUE(finished);
  EXPECT_EQ(steps, (std::vector<std::int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(evals, (std::vector<std::int64_t>{3, 5}));  // the end of each stage
  ASSERT_EQ(records.size(), 1 + 5 + 2 + 1u);
  EXPECT_EQ(records.front()["type"], "config");
  EXPECT_EQ(records.front()["device"]["kind"], "cpu");
  EXPECT_EQ(records.front()["peak"]["source"], "a test peak");
  EXPECT_EQ(records.back()["type"], "summary");
  for (const auto& j : records) {
    if (j["type"] != "step") continue;
    const double seconds = j["seconds"].get<double>();
    EXPECT_DOUBLE_EQ(j["ms"].get<double>(), 1e3 * seconds);
    EXPECT_DOUBLE_EQ(j["tok_per_s"].get<double>(), 512 / seconds);  // seq 256, accum 2
    const double executed = j["tflops"]["executed"].get<double>() * 1e12 * seconds;
    const double dense = j["tflops"]["dense_equivalent"].get<double>() * 1e12 * seconds;
    EXPECT_NEAR(j["mfu"]["executed"].get<double>(), executed / seconds / 1e9, 1e-12);
    EXPECT_NEAR(j["mfu"]["dense_equivalent"].get<double>(), dense / seconds / 1e9, 1e-12);
    if (j["stage"] == 1) {
      EXPECT_NE(executed, dense);  // Lighthouse layers at S (here S = 384 > N = 256)
    } else {
      EXPECT_NEAR(executed, dense, 1e-6 * dense);
    }
    EXPECT_GT(j["peak_memory_bytes"].get<std::int64_t>(), 0);
    EXPECT_EQ(j["memory"], "host_rss");
    const auto& split = j["split_seconds"];
    double sum = 0;
    for (const char* k : {"dense_attention", "lighthouse_attention", "matmul", "other"}) {
      ASSERT_TRUE(split.contains(k)) << k;
      EXPECT_GE(split[k].get<double>(), 0.0) << k;
      sum += split[k].get<double>();
    }
    EXPECT_LE(sum, seconds * 1.0001);
    EXPECT_GT(split["matmul"].get<double>(), 0.0);
    EXPECT_GT(split[j["stage"] == 1 ? "lighthouse_attention" : "dense_attention"].get<double>(),
              0.0);
  }
  const auto& summary = records.back();
  EXPECT_GT(summary["stage1"]["mfu"]["executed"].get<double>(), 0.0);
  EXPECT_EQ(summary["peak_tflops"], 1e-3);
  EXPECT_FALSE(summary.contains("sgemm_gflops"));
  EXPECT_EQ(report.stages[0].steps, 3);
  EXPECT_EQ(report.stages[1].steps, 2);
}

TEST_F(Run, StepZeroCheckpointAndResumesAreBitExact) {
  RunOptions o = options();
  o.save = (dir_ / "ck").string();
  o.save_initial = true;
  o.save_every = 1;
  std::vector<std::int64_t> saved;
  RunHooks hooks;
  hooks.saved = [&](std::int64_t step, const std::string&) { saved.push_back(step); };
  const std::vector<double> whole = losses(run_training(o, hooks));
  EXPECT_EQ(saved, (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5}));
  for (int from : {0, 2, 4}) {  // the start, before and after the stage switch
    RunOptions r = options();
    r.resume = (dir_ / "ck" / ("step-0000000" + std::to_string(from))).string();
    const RunReport resumed = run_training(r);
    EXPECT_EQ(resumed.start.resumed_from, from);
    std::vector<double> expected(whole.begin() + from, whole.end());
    EXPECT_EQ(losses(resumed), expected) << "from step " << from;
  }
}

TEST_F(Run, DumpedBatchesAreWhatTheModelTrainedOn) {
  RunOptions o = options();
  o.dump_batches = (dir_ / "batches.npy").string();
  run_training(o);
  const lighthouse::NpyArray a = lighthouse::read_npy(o.dump_batches);
  const TrainConfig& c = o.config;
  ASSERT_EQ(a.shape, (std::vector<std::int64_t>{5, c.accum, 2, c.batch, c.seq}));
  ASSERT_EQ(static_cast<std::size_t>(a.numel()), seen_.size());
  const std::int32_t* dumped = a.data<std::int32_t>();
  EXPECT_TRUE(std::equal(seen_.begin(), seen_.end(), dumped));
}

TEST_F(Run, InconsistentOptionsNameTheOption) {
  RunOptions o = options();
  o.save_every = 2;
  try {
    run_training(o);
    FAIL() << "expected InvalidArgument";
  } catch (const lighthouse::InvalidArgument& e) {
    EXPECT_EQ(e.param(), "save_every");
  }
  o = options();
  o.passkey_lengths = {32};
  EXPECT_THROW(run_training(o), lighthouse::InvalidArgument);
}

TEST(Compare, ArmsShareTheTokenBudgetAndTheSwitchIsMeasured) {
  RunOptions base;
  base.config.stage1_steps = 8;
  base.config.stage2_steps = 2;
  base.config.lighthouse.selection = lighthouse::Selection::kOriginal;
  base.save = "ck";
  const RunOptions dense = arm_options(base, Arm::kDense);
  const RunOptions original = arm_options(base, Arm::kOriginal);
  const RunOptions causal = arm_options(base, Arm::kCausal);
  const RunOptions stride = arm_options(base, Arm::kStride);
  EXPECT_EQ(dense.config.stage1_steps, 0);
  EXPECT_EQ(dense.config.stage2_steps, 10);
  EXPECT_FALSE(dense.leak_probe);
  for (const RunOptions* lh : {&original, &causal, &stride}) {
    EXPECT_EQ(lh->config.stage1_steps, 8);
    EXPECT_EQ(lh->config.stage2_steps, 2);
    EXPECT_TRUE(lh->leak_probe);
    EXPECT_EQ(lh->config.seed, base.config.seed);
    EXPECT_EQ(lh->config.schedule.lr, base.config.schedule.lr);
  }
  EXPECT_EQ(original.config.lighthouse.selection, lighthouse::Selection::kOriginal);
  EXPECT_EQ(causal.config.lighthouse.selection, lighthouse::Selection::kCausal);
  EXPECT_EQ(stride.config.lighthouse.selection, lighthouse::Selection::kStride);
  EXPECT_EQ(dense.save, "ck/dense");
  EXPECT_EQ(original.save, "ck/original");
  EXPECT_EQ(causal.save, "ck/causal");
  EXPECT_EQ(stride.save, "ck/stride");

  RunReport r;
  r.losses = {{7, 2.0}, {8, 1.5}, {9, 2.5}, {10, 1.7}, {11, 1.4}};
  ArmReport c;
  measure_switch(r, 8, &c);
  EXPECT_DOUBLE_EQ(c.jump, 1.0);
  ASSERT_TRUE(c.recover_steps.has_value());
  EXPECT_EQ(*c.recover_steps, 3);
  r.losses.pop_back();
  ArmReport never;
  measure_switch(r, 8, &never);
  EXPECT_FALSE(never.recover_steps.has_value());
  RunOptions no_stage1 = base;
  no_stage1.config.stage1_steps = 0;
  const auto no_hooks = [](int, Arm) { return RunHooks{}; };
  EXPECT_THROW(run_compare(no_stage1, {Arm::kDense}, no_hooks), lighthouse::InvalidArgument);
  EXPECT_THROW(run_compare(base, {}, no_hooks), lighthouse::InvalidArgument);
}

TEST(Compare, ArmsParseInOrderAndRejectUnknownOrRepeatedOnes) {
  EXPECT_EQ(parse_arms("dense,original,causal"),
            (std::vector<Arm>{Arm::kDense, Arm::kOriginal, Arm::kCausal}));
  EXPECT_EQ(parse_arms("causal,dense"), (std::vector<Arm>{Arm::kCausal, Arm::kDense}));
  EXPECT_EQ(parse_arms("stride,causal"), (std::vector<Arm>{Arm::kStride, Arm::kCausal}));
  for (const char* bad :
       {"", "dense,", "dense,dense", "lighthouse", "dense,,causal", "stride,stride"}) {
    try {
      parse_arms(bad, "--arms");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const lighthouse::InvalidArgument& e) {
      EXPECT_EQ(e.param(), "--arms");
    }
  }
}

// The three arms end to end on a tiny model: the same data and token budget, the switch, the
// evaluations (stage-1 attention and dense) and the leak probe in each Lighthouse arm.
TEST_F(Run, CompareRunsThreeArmsWithTheirProbesAndEvaluations) {
  RunOptions o = options();
  o.config.seq = 512;  // 256 level-2 candidates: the two selection rules keep different 128
  o.leak_samples = 4;
  std::vector<std::string> seen;
  const CompareReport cmp =
      run_compare(o, {Arm::kDense, Arm::kOriginal, Arm::kCausal}, [&](int i, Arm arm) {
        EXPECT_EQ(static_cast<int>(seen.size()), i);
        seen.push_back(arm_name(arm));
        return RunHooks{};
      });
  EXPECT_EQ(seen, (std::vector<std::string>{"dense", "original", "causal"}));
  ASSERT_EQ(cmp.arms.size(), 3u);
  const TrainConfig& c = o.config;
  const std::int64_t steps = c.stage1_steps + c.stage2_steps;
  EXPECT_EQ(cmp.tokens_per_run, steps * c.seq * c.batch * c.accum);
  for (const ArmReport& a : cmp.arms) {
    const RunReport& r = a.report;
    EXPECT_EQ(r.stages[0].tokens + r.stages[1].tokens, cmp.tokens_per_run) << arm_name(a.arm);
    ASSERT_FALSE(r.evals.empty());
    EXPECT_EQ(r.evals.back().first, steps);
    EXPECT_FALSE(r.evals.back().second.train_attention_loss.has_value());
    if (a.arm == Arm::kDense) {
      EXPECT_EQ(r.stages[0].steps, 0);
      EXPECT_FALSE(r.leak.has_value());
      continue;
    }
    EXPECT_EQ(r.stages[0].steps, c.stage1_steps);
    ASSERT_TRUE(r.leak.has_value()) << arm_name(a.arm);
    EXPECT_EQ(r.leak->samples.size(), 4u);
    EXPECT_EQ(r.leak_step, c.stage1_steps);
    // The evaluation at the end of stage 1 has both losses; the jump is the switch's.
    bool stage1_end = false;
    for (const auto& [step, e] : r.evals) {
      if (step == c.stage1_steps) stage1_end = e.train_attention_loss.has_value();
    }
    EXPECT_TRUE(stage1_end) << arm_name(a.arm);
    ArmReport again;
    measure_switch(r, c.stage1_steps, &again);
    EXPECT_EQ(a.jump, again.jump);
  }
  // The two Lighthouse arms select differently, so their stage-1 training differs.
  EXPECT_NE(cmp.arms[1].report.losses, cmp.arms[2].report.losses);
  EXPECT_EQ(cmp.find(Arm::kCausal), &cmp.arms[2]);
}

}  // namespace
