// The trainer with context parallelism (`lighthouse train --cp W` on the CPU: W ranks as
// threads): the same run as one rank, W-independent checkpoints, rank 0 alone reporting, the
// rules of CP as named errors, and the sharding of a batch into the ranks' chunks.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "lighthouse/communicator.hpp"
#include "support/cli_run.hpp"
#include "tiny_configs.hpp"
#include "train/run.hpp"
#include "train/sequence_shards.hpp"

namespace {

namespace fs = std::filesystem;
using namespace lighthouse::train;

// Two Lighthouse steps (L2 p2 K512: 4 tiles, whole tiles in each of 2W = 4 chunks), then two
// dense ones, two micro-batches of one sequence each; the last layer stays dense in stage 1.
// Sizes that keep every product of a rank's 1024 rows (W = 2) in train/matmul.cpp's bands of 256
// rows, as the whole batch's 2048 are: the first forward is then the same bits (see kTolerance).
TrainConfig cp_config(int cp) {
  TrainConfig c = lhtest::two_stage_config();
  c.model.layers = 2;
  c.model.heads = 2;
  c.model.dim = 32;
  c.seq = 2048;
  c.batch = 1;
  c.accum = 2;
  c.stage1_steps = 2;
  c.stage2_steps = 2;
  c.lighthouse.topk = 512;
  c.lighthouse.selection = lighthouse::Selection::kOriginal;
  c.schedule.warmup = 1;
  c.cp = cp;
  return c;
}

class TrainCp : public ::testing::Test {
 protected:
  void SetUp() override { data_ = generate_corpus(20000, 5, 600); }
  RunOptions options(int cp) {
    RunOptions o;
    o.config = cp_config(cp);
    o.train = o.heldout = &data_;
    o.eval_every = 2;
    o.passkey_trials = 1;
    o.passkey_lengths = {100, 2048};  // 100 does not split into chunks: every rank runs it whole
    o.leak_probe = true;  // the stage-1 attention on held-out sequences, through logits rows
    o.leak_samples = 8;
    o.make_model = [](const TrainConfig& c) {
      return make_cpu_model(c.model, c.seed, c.adamw, make_cpu_attention(1));
    };
    return o;
  }
  lhtest::TempDir dir_{"lighthouse-train-cp"};
  TokenStream data_;
};

struct Numbers {
  std::vector<double> losses, grad_norms, evals;
};

Numbers numbers(const RunOptions& o, std::vector<std::string>* records = nullptr) {
  Numbers n;
  RunHooks hooks;
  hooks.step = [&](const StepMetrics& m) { n.grad_norms.push_back(m.result.grad_norm); };
  if (records) hooks.record = [&](const std::string& j) { records->push_back(j); };
  const RunReport r = run_training(o, hooks);
  for (const auto& [step, loss] : r.losses) n.losses.push_back(loss);
  for (const auto& [step, e] : r.evals) {
    n.evals.push_back(e.dense_loss);
    if (e.train_attention_loss) n.evals.push_back(*e.train_attention_loss);
    if (e.recall_loss) n.evals.push_back(*e.recall_loss);
  }
  if (r.leak) n.evals.push_back(r.leak->mean_real), n.evals.push_back(r.leak->mean_corrupt);
  if (r.passkey) n.evals.push_back(r.passkey->correct);
  return n;
}

// Relative difference.
double rel(double a, double b) {
  return std::abs(a - b) / std::max(std::abs(b), 1e-30);
}

// How W ranks compare with one. The first forward can be the same bits: the attention is the
// library's CP (on the CPU the single-device bits), every other layer is token-local, and the
// loss sums the gathered row losses in whole-batch order; but a product's row is the same bits
// only where the rank's product runs in the same BLAS calls as the whole batch's
// (train/matmul.cpp: bands of 256 rows from 1024 rows and 2 MFLOP on; a smaller product is one
// call whose row count changes OpenBLAS's blocking: about 3e-8 relative then). The first step's
// gradients differ by rounding only: each weight gradient is a sum over the tokens that W ranks
// add in W parts and then over the ranks (measured: the gradient norm 3e-9 relative). AdamW then
// amplifies that rounding: its first updates divide each element by its own magnitude, so an
// element whose sum cancels to about zero moves by up to lr either way. Measured over these four
// steps: losses 2e-4 relative (7 times less with AdamW eps 1e-5 instead of 1e-8), gradient norms
// 3e-3; hence the bounds below, which a real error (a missing gradient sum, wrong rotary
// positions, a wrong chunk) exceeds from the first step on.
constexpr double kFirstGradNorm = 1e-6;
constexpr double kTolerance = 1e-3;      // losses and evaluations after the first step
constexpr double kGradNormDrift = 1e-2;  // gradient norms after the first step

TEST_F(TrainCp, OneAndTwoRanksTrainLikeNoContextParallelism) {
  const Numbers one = numbers(options(0));
  for (int cp : {1, 2}) {
    const Numbers w = numbers(options(cp));
    ASSERT_EQ(w.losses.size(), one.losses.size());
    ASSERT_EQ(w.evals.size(), one.evals.size());
    // The first step's forward, before any gradient: the same bits.
    EXPECT_EQ(w.losses[0], one.losses[0]) << "cp " << cp;
    EXPECT_LT(rel(w.grad_norms[0], one.grad_norms[0]), kFirstGradNorm) << "cp " << cp;
    for (std::size_t i = 0; i < one.losses.size(); ++i) {
      EXPECT_LT(rel(w.losses[i], one.losses[i]), kTolerance) << "cp " << cp << " step " << i + 1;
      EXPECT_LT(rel(w.grad_norms[i], one.grad_norms[i]), kGradNormDrift) << "cp " << cp;
    }
    for (std::size_t i = 0; i < one.evals.size(); ++i) {
      EXPECT_LT(rel(w.evals[i], one.evals[i]), kTolerance) << "cp " << cp << " eval " << i;
    }
    if (cp == 1) {  // one rank: the same sums in the same order
      EXPECT_EQ(w.losses, one.losses);
      EXPECT_EQ(w.evals, one.evals);
    }
  }
}

TEST_F(TrainCp, FourRanksWithWholeTilesPerChunk) {
  // 2W = 8 chunks of 128 tokens need K / 128 = 8 tiles and 8 | seq.
  RunOptions o = options(0);
  o.config.lighthouse.topk = 1024;
  o.config.model.heads = 4;
  o.config.accum = 1;
  o.passkey_trials = 0;
  o.leak_probe = false;
  const Numbers one = numbers(o);
  o.config.cp = 4;
  const Numbers four = numbers(o);
  // 512 rows per rank: not the whole batch's bands, so only the tolerances (see above).
  EXPECT_LT(rel(four.losses[0], one.losses[0]), 1e-7);
  EXPECT_LT(rel(four.grad_norms[0], one.grad_norms[0]), kFirstGradNorm);
  for (std::size_t i = 0; i < one.losses.size(); ++i) {
    EXPECT_LT(rel(four.losses[i], one.losses[i]), kTolerance) << "step " << i + 1;
  }
}

// Every run, and any thread count (each rank gets threads / W OpenMP workers).
TEST_F(TrainCp, SameBitsOnEveryRunAndThreadCount) {
  const Numbers a = numbers(options(2));
  RunOptions o = options(2);
  o.config.threads = 4;
  o.make_model = [](const TrainConfig& c) {
    return make_cpu_model(c.model, c.seed, c.adamw, make_cpu_attention(c.threads));
  };
  const Numbers b = numbers(o);
  EXPECT_EQ(a.losses, b.losses);
  EXPECT_EQ(a.grad_norms, b.grad_norms);
  EXPECT_EQ(a.evals, b.evals);
}

TEST_F(TrainCp, RankZeroAloneReportsAndSaves) {
  std::vector<std::string> one_records, two_records;
  numbers(options(0), &one_records);
  RunOptions o = options(2);
  o.save = dir_ / "ck";
  std::vector<std::int64_t> saved;
  RunHooks hooks;
  hooks.record = [&](const std::string& j) { two_records.push_back(j); };
  hooks.saved = [&](std::int64_t step, const std::string&) { saved.push_back(step); };
  run_training(o, hooks);
  EXPECT_EQ(two_records.size(), one_records.size());
  EXPECT_EQ(saved, (std::vector<std::int64_t>{4}));
  std::vector<fs::path> folders;
  for (const auto& e : fs::directory_iterator(dir_ / "ck")) folders.push_back(e.path());
  EXPECT_EQ(folders.size(), 1u);
}

// A checkpoint holds the replicated weights and no W: one written with W = 2 resumes with W = 1
// (no CP), W = 2 or W = 4, and the first forward after it is the same bits on all of them.
TEST_F(TrainCp, CheckpointWrittenWithTwoRanksResumesWithAnyOther) {
  RunOptions o = options(2);
  o.save = dir_ / "ck";
  o.save_every = 1;
  o.passkey_trials = 0;
  const Numbers whole = numbers(o);
  for (int from : {1, 3}) {  // stage 1, and after the switch
    std::vector<double> first;
    for (int cp : {0, 2, 1}) {
      RunOptions r = options(cp);
      r.passkey_trials = 0;
      r.resume = (dir_.path() / "ck" / ("step-0000000" + std::to_string(from))).string();
      const Numbers resumed = numbers(r);
      ASSERT_EQ(resumed.losses.size(), whole.losses.size() - from);
      first.push_back(resumed.losses[0]);
      for (std::size_t i = 0; i < resumed.losses.size(); ++i) {
        EXPECT_LT(rel(resumed.losses[i], whole.losses[from + i]), kTolerance)
            << "cp " << cp << " from " << from;
      }
      if (cp == 2) {  // the same W resumes bit for bit
        EXPECT_EQ(resumed.losses,
                  std::vector<double>(whole.losses.begin() + from, whole.losses.end()));
      }
    }
    EXPECT_EQ(first[0], first[1]) << "from " << from;
    EXPECT_EQ(first[0], first[2]) << "from " << from;
  }
}

void expect_rejected(TrainConfig c, const std::string& param) {
  try {
    c.validate();
    FAIL() << "expected InvalidArgument naming " << param;
  } catch (const lighthouse::InvalidArgument& e) {
    EXPECT_EQ(e.param(), param) << e.what();
  }
}

TEST(TrainCpRules, EveryRuleIsANamedError) {
  cp_config(2).validate();  // the test configuration is valid
  TrainConfig c = cp_config(2);
  c.lighthouse.selection = lighthouse::Selection::kCausal;  // the trainer's default
  expect_rejected(c, "selection");
  try {
    c.validate();
  } catch (const lighthouse::InvalidArgument& e) {
    EXPECT_NE(std::string(e.rule()).find("--selection original"), std::string::npos) << e.what();
  }
  c.stage1_steps = 0;  // dense only: no selection
  c.validate();
  c = cp_config(3);  // 2 heads
  expect_rejected(c, "cp");
  c = cp_config(4);  // 4 tiles, 8 chunks
  c.model.heads = 4;
  expect_rejected(c, "cp");
  c = cp_config(2);
  c.seq = 2050;  // not divisible by 4
  c.stage1_steps = 0;
  expect_rejected(c, "seq");
  c = cp_config(2);
  c.model.kv_heads = 1;
  expect_rejected(c, "kv_heads");
  c = cp_config(2);
  c.lighthouse.scorer = lighthouse::Scorer::kDilated;
  expect_rejected(c, "scorer");
  c = cp_config(2);
  c.model.pack_documents = true;  // documents would cross the ranks' chunks
  expect_rejected(c, "pack_documents");
  c = cp_config(-1);
  expect_rejected(c, "cp");
}

TEST(TrainCpRules, ACommunicatorOfAnotherSizeIsRejected) {
  auto comms = lighthouse::make_thread_communicators(2);
  RunOptions o;
  o.config = cp_config(4);
  o.config.model.heads = 4;
  o.config.lighthouse.topk = 1024;
  o.config.seq = 4096;
  TokenStream data = generate_corpus(5000, 1, 500);
  o.train = o.heldout = &data;
  o.make_model = [](const TrainConfig& c) {
    return make_cpu_model(c.model, c.seed, c.adamw, make_cpu_attention(1));
  };
  o.comm = comms[0].get();
  try {
    run_training(o);
    FAIL() << "expected InvalidArgument";
  } catch (const lighthouse::InvalidArgument& e) {
    EXPECT_EQ(e.param(), "cp");
  }
}

TEST(SequenceShards, ChunksAreHeadAndTailAndPutBackInverts) {
  const int world = 3;
  const std::int64_t batch = 2, seq = 12;  // chunks of 2 tokens
  std::vector<int> whole(batch * seq);
  std::iota(whole.begin(), whole.end(), 0);
  std::vector<int> gathered;
  for (int r = 0; r < world; ++r) {
    const SequenceShards sh(world, r, batch, seq);
    std::vector<int> local(static_cast<std::size_t>(sh.local_rows()));
    sh.take(whole.data(), local.data());
    // Rank r: chunks r and 5 - r of each sequence.
    EXPECT_EQ(local[0], 2 * r);
    EXPECT_EQ(local[2], 2 * (5 - r));
    EXPECT_EQ(local[4], seq + 2 * r);
    for (std::int64_t j = 0; j < sh.local_seq(); ++j) {
      EXPECT_EQ(sh.owner(sh.position(j)), r);
      EXPECT_EQ(sh.local_position(sh.position(j)), j);
    }
    gathered.insert(gathered.end(), local.begin(), local.end());
  }
  std::vector<int> back(whole.size(), -1);
  SequenceShards(world, 0, batch, seq).put_back(gathered.data(), 1, back.data());
  EXPECT_EQ(back, whole);
}

}  // namespace
