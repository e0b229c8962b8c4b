// Data parallelism across context-parallel groups (TrainConfig::dp, RunOptions::world; on GPUs
// `torchrun --nproc-per-node D*W lighthouse train --cp W`): the rank -> (group, CP rank) map, the
// data slicing rule (D groups read exactly one group's run with D times the batch), the CPU's
// thread groups, and the D-group run against one group with D times the batch.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "lighthouse/communicator.hpp"
#include "support/cli_run.hpp"
#include "tiny_configs.hpp"
#include "train/data_parallel.hpp"
#include "train/run.hpp"

namespace {

namespace fs = std::filesystem;
using namespace lighthouse::train;
using lighthouse::Communicator;
using lighthouse::InvalidArgument;

TEST(DataParallel, ConsecutiveRanksFormAGroup) {
  for (int world : {1, 2, 4, 8}) {
    for (int cp : {1, 2, 4, 8}) {
      if (world % cp != 0) continue;
      for (int rank = 0; rank < world; ++rank) {
        const DataParallelRank r = data_parallel_rank(world, rank, cp);
        EXPECT_EQ(r.groups, world / cp);
        EXPECT_EQ(r.group, rank / cp);
        EXPECT_EQ(r.cp_rank, rank % cp);
      }
    }
  }
  const DataParallelRank r = data_parallel_rank(8, 5, 2);  // D = 4 groups of W = 2
  EXPECT_EQ(r.groups, 4);
  EXPECT_EQ(r.group, 2);
  EXPECT_EQ(r.cp_rank, 1);
}

TEST(DataParallel, WorldNotAMultipleOfCpIsANamedError) {
  try {
    data_parallel_rank(6, 0, 4);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.param(), "--cp");
    EXPECT_EQ(e.value(), "4");
    EXPECT_NE(std::string(e.rule()).find("WORLD_SIZE = 6"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.rule()).find("must divide"), std::string::npos) << e.what();
  }
  EXPECT_THROW(data_parallel_rank(4, 4, 2), InvalidArgument);  // RANK past the world
  EXPECT_THROW(data_parallel_rank(4, 0, 0), InvalidArgument);
}

// Group g of D reads sequences g, g + D, ... of every micro-batch of D * batch; together the D
// packers read exactly the sequences of one packer with D times the batch and end where it ends
// (the position a checkpoint holds), also where the stream wraps around.
TEST(DataParallel, GroupsReadOneRunWithDTimesTheBatch) {
  TokenStream stream(1000);
  for (std::size_t i = 0; i < stream.size(); ++i) stream[i] = static_cast<std::int32_t>(i % 251);
  const std::int64_t seq = 37, batch = 3;
  for (int groups : {1, 2, 3, 4}) {
    Packer whole(&stream, seq, 11);
    std::vector<Packer> parts(static_cast<std::size_t>(groups), Packer(&stream, seq, 11));
    for (int micro = 0; micro < 5; ++micro) {  // 5 * 4 * 3 * 37 tokens: wraps around
      const std::int64_t n = groups * batch * seq;
      std::vector<std::int32_t> in(n), tg(n);
      whole.next(groups * batch, in.data(), tg.data());
      for (int g = 0; g < groups; ++g) {
        std::vector<std::int32_t> gin(batch * seq), gtg(batch * seq);
        parts[g].next(batch, gin.data(), gtg.data(), groups, g);
        for (std::int64_t b = 0; b < batch; ++b) {
          const std::int64_t j = b * groups + g;  // the sequence's index in the whole batch
          for (std::int64_t i = 0; i < seq; ++i) {
            ASSERT_EQ(gin[b * seq + i], in[j * seq + i]) << groups << " " << g << " " << micro;
            ASSERT_EQ(gtg[b * seq + i], tg[j * seq + i]) << groups << " " << g << " " << micro;
          }
        }
        EXPECT_EQ(parts[g].position(), whole.position());
      }
    }
  }
  Packer p(&stream, seq);
  std::vector<std::int32_t> in(seq), tg(seq);
  EXPECT_THROW(p.next(1, in.data(), tg.data(), 2, 2), InvalidArgument);
  EXPECT_THROW(p.next(1, in.data(), tg.data(), 0, 0), InvalidArgument);
}

TEST(DataParallel, ConfigRules) {
  TrainConfig c = lhtest::tiny_config();
  c.dp = 2;
  try {
    c.validate();  // no --cp
    FAIL() << "expected InvalidArgument naming dp";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.param(), "dp");
    EXPECT_NE(std::string(e.rule()).find("cp >= 1"), std::string::npos) << e.what();
  }
  c.dp = 0;
  EXPECT_THROW(c.validate(), InvalidArgument);
  c.dp = 2;
  c.cp = 1;
  c.validate();
}

TEST(DataParallel, ThreadGroupsOfConsecutiveRanks) {
  std::atomic<int> seen{0};
  lighthouse::run_thread_rank_groups(6, 2, [&](Communicator& world, Communicator& group) {
    EXPECT_EQ(world.size(), 6);
    EXPECT_EQ(group.size(), 2);
    EXPECT_EQ(group.rank(), world.rank() % 2);
    // The group's collective reaches its own ranks only.
    const int mine = world.rank();
    int both[2] = {-1, -1};
    group.all_gather_host(&mine, both, sizeof mine);
    EXPECT_EQ(both[0], mine / 2 * 2);
    EXPECT_EQ(both[1], mine / 2 * 2 + 1);
    ++seen;
  });
  EXPECT_EQ(seen.load(), 6);
  try {
    lighthouse::run_thread_rank_groups(6, 4, [](Communicator&, Communicator&) {});
    FAIL() << "expected InvalidArgument naming world";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.param(), "world");
  }
}

// A rank that fails while its group-mate waits in a group collective: the mate is released (no
// hang) and the failing rank's own error comes back.
TEST(DataParallel, AFailingRankReleasesItsGroup) {
  try {
    lighthouse::run_thread_rank_groups(4, 2, [](Communicator& world, Communicator& group) {
      if (world.rank() == 3) throw std::runtime_error("rank 3 broke");
      int x = 0, y[2];
      group.all_gather_host(&x, y, sizeof x);
    });
    FAIL() << "expected the failing rank's error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "rank 3 broke");
  }
}

// The training run: D groups against one group with D times the batch. The same sequences and
// the same mean gradient, summed in another order: equal to rounding, which AdamW amplifies over
// the steps as it does for W ranks (context_parallel_train_test.cpp: 2e-4 measured over four
// steps; the same bounds here). A wrong slice, a missing 1/D or a gradient summed over the group
// only are off by far more from the first step on.
TrainConfig dp_config() {
  TrainConfig c = lhtest::two_stage_config();
  c.model.layers = 2;
  c.model.heads = 2;
  c.model.dim = 32;
  c.seq = 1024;
  c.batch = 2;  // the whole batch; D groups get batch / D each
  c.accum = 2;
  c.stage1_steps = 2;
  c.stage2_steps = 2;
  c.lighthouse.topk = 512;
  c.lighthouse.selection = lighthouse::Selection::kOriginal;
  c.schedule.warmup = 1;
  return c;
}

struct Numbers {
  std::vector<double> losses, grad_norms, evals;
  std::size_t records = 0;
};

class TrainDp : public ::testing::Test {
 protected:
  void SetUp() override { data_ = generate_corpus(20000, 5, 600); }
  // D groups of W = cp ranks, each with batch / D sequences.
  RunOptions options(int cp, int dp) {
    RunOptions o;
    o.config = dp_config();
    o.config.cp = cp;
    o.config.dp = dp;
    o.config.batch /= dp;
    o.train = o.heldout = &data_;
    o.eval_every = 2;
    o.passkey_trials = 0;
    o.make_model = [](const TrainConfig& c) {
      return make_cpu_model(c.model, c.seed, c.adamw, make_cpu_attention(1));
    };
    return o;
  }
  Numbers numbers(const RunOptions& o) {
    Numbers n;
    RunHooks hooks;
    hooks.step = [&](const StepMetrics& m) { n.grad_norms.push_back(m.result.grad_norm); };
    hooks.record = [&](const std::string&) { ++n.records; };
    const RunReport r = run_training(o, hooks);
    for (const auto& [step, loss] : r.losses) n.losses.push_back(loss);
    for (const auto& [step, e] : r.evals) n.evals.push_back(e.dense_loss);
    return n;
  }
  lhtest::TempDir dir_{"lighthouse-train-dp"};
  TokenStream data_;
};

double rel(double a, double b) {
  return std::abs(a - b) / std::max(std::abs(b), 1e-30);
}

TEST_F(TrainDp, GroupsTrainLikeOneGroupWithTheirWholeBatch) {
  const Numbers one = numbers(options(1, 1));
  for (auto [cp, dp] : {std::pair{1, 2}, std::pair{2, 2}}) {
    const Numbers d = numbers(options(cp, dp));
    ASSERT_EQ(d.losses.size(), one.losses.size());
    EXPECT_EQ(d.records, one.records) << "rank 0 alone reports";
    // The first step's forward, before any update: the groups' mean of the same row losses.
    EXPECT_LT(rel(d.losses[0], one.losses[0]), 1e-6) << "cp " << cp << " dp " << dp;
    EXPECT_LT(rel(d.grad_norms[0], one.grad_norms[0]), 1e-6) << "cp " << cp << " dp " << dp;
    for (std::size_t i = 0; i < one.losses.size(); ++i) {
      EXPECT_LT(rel(d.losses[i], one.losses[i]), 1e-3) << "cp " << cp << " dp " << dp << " " << i;
      EXPECT_LT(rel(d.grad_norms[i], one.grad_norms[i]), 1e-2) << "cp " << cp << " dp " << dp;
    }
    ASSERT_EQ(d.evals.size(), one.evals.size());
    for (std::size_t i = 0; i < one.evals.size(); ++i) {
      EXPECT_LT(rel(d.evals[i], one.evals[i]), 1e-3) << "cp " << cp << " dp " << dp << " " << i;
    }
  }
}

// Same bits on every run.
TEST_F(TrainDp, Deterministic) {
  const Numbers a = numbers(options(1, 2));
  const Numbers b = numbers(options(1, 2));
  EXPECT_EQ(a.losses, b.losses);
  EXPECT_EQ(a.grad_norms, b.grad_norms);
  EXPECT_EQ(a.evals, b.evals);
}

// The checkpoint holds no D: the data position is the whole batch's, so a D = 2 checkpoint
// resumes in one group with twice the batch and goes on with the same sequences.
TEST_F(TrainDp, CheckpointResumesInOneGroupWithTheWholeBatch) {
  RunOptions o = options(1, 2);
  o.save = dir_ / "ck";
  o.save_every = 1;
  const Numbers whole = numbers(o);
  RunOptions r = options(1, 1);
  r.resume = (dir_.path() / "ck" / "step-00000002").string();
  const Numbers resumed = numbers(r);
  ASSERT_EQ(resumed.losses.size(), 2u);
  for (std::size_t i = 0; i < resumed.losses.size(); ++i) {
    EXPECT_LT(rel(resumed.losses[i], whole.losses[2 + i]), 1e-3) << i;
  }
}

}  // namespace
