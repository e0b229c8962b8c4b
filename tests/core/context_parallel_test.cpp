// Context parallelism on the CPU (W ranks as threads): the result equals the single-device
// result bit for bit (outputs, selected indices, all three gradients), for several
// configurations and W = 1, 2, 4; the bytes each rank sends are the plan's estimate; bad input
// is an InvalidArgument naming the parameter (never a hang).
#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "lighthouse/lighthouse.hpp"
#include "support/cp_run.hpp"
#include "support/invalid_argument.hpp"
#include "support/library_run.hpp"
#include "support/random.hpp"

namespace {

using lighthouse::Config;
using lighthouse::DType;
using lighthouse::Selection;

struct Case {
  const char* name;
  lhtest::Shape shape;
  Config config;
  std::vector<int> worlds;
};

// Small shapes whose tiles split into 2W chunks; L >= 2 cases have chunk edges at every level.
const Case kCases[] = {
    {"L2_p2_K1024",
     {2, 2048, 4, 16},
     {.levels = 2, .pool = 2, .topk = 1024, .scale = {}},
     {1, 2, 4}},
    {"L3_p4_K512", {1, 8192, 2, 16}, {.levels = 3, .pool = 4, .topk = 512, .scale = {}}, {1, 2}},
    {"L3_p2_K512", {2, 2048, 2, 8}, {.levels = 3, .pool = 2, .topk = 512, .scale = {}}, {1, 2}},
    {"L4_p2_K512_scale", {1, 4096, 4, 8}, {.levels = 4, .pool = 2, .topk = 512, .scale = 0.3}, {2}},
    {"dense", {2, 512, 4, 16}, {.levels = 1, .pool = 2, .topk = 128, .scale = {}}, {1, 2, 4}},
};

void expect_same(const lhtest::Outputs& cp, const lhtest::Outputs& one, const std::string& what) {
  EXPECT_TRUE(cp.indices == one.indices) << what << ": indices";
  EXPECT_TRUE(lhtest::same_bits(cp.out, one.out)) << what << ": out";
  EXPECT_TRUE(lhtest::same_bits(cp.dq, one.dq)) << what << ": dq";
  EXPECT_TRUE(lhtest::same_bits(cp.dk, one.dk)) << what << ": dk";
  EXPECT_TRUE(lhtest::same_bits(cp.dv, one.dv)) << what << ": dv";
}

class ContextParallel : public ::testing::TestWithParam<DType> {};

TEST_P(ContextParallel, EqualsOneDeviceBitForBit) {
  const DType dtype = GetParam();
  for (const Case& c : kCases) {
    const lhtest::Problem problem = lhtest::random_problem(c.config, c.shape, 1500);
    const lhtest::Outputs one = lhtest::run_library(problem, dtype, {.threads = 2});
    for (int world : c.worlds) {
      const std::string what = std::string(c.name) + ", cp = " + std::to_string(world);
      SCOPED_TRACE(what);
      const lhtest::CpOutputs cp = lhtest::run_cp(problem, dtype, world, {.threads = 1});
      EXPECT_EQ(cp.plan.seq, c.shape.N) << "Context::plan() is the whole sequence's";
      expect_same(cp, one, what);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cpu, ContextParallel, ::testing::Values(DType::kFloat32, DType::kFloat64),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           return std::string(lighthouse::dtype_name(info.param));
                         });

// Every rank sends exactly what ShardPlan::*_traffic() says, and its stage times are filled.
TEST(ContextParallelTraffic, BytesSentAreThePlansEstimate) {
  const Config config{.levels = 3, .pool = 2, .topk = 512, .scale = {}};
  const lhtest::Shape shape{2, 2048, 2, 8};
  const lhtest::Problem problem = lhtest::random_problem(config, shape, 7);
  for (int world : {1, 2}) {
    const lighthouse::ShardPlan sp =
        lighthouse::make_shard_plan(config, shape.B, shape.N, shape.H, shape.D, world);
    const lhtest::CpOutputs cp = lhtest::run_cp(problem, DType::kFloat32, world, {.threads = 1});
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(cp.forward_stats[r].bytes_sent, sp.forward_traffic(DType::kFloat32).total());
      EXPECT_EQ(cp.backward_stats[r].bytes_sent, sp.backward_traffic(DType::kFloat32).total());
      // check, q/k/v, out, edges
      EXPECT_EQ(cp.forward_stats[r].collectives, 4);
      const lighthouse::StageTimes& t = cp.forward_times[r];
      EXPECT_GT(t.attention, 0.0);
      EXPECT_GT(t.gather, 0.0);
      EXPECT_GE(t.communication, 0.0);
    }
  }
}

// ---- bad input: InvalidArgument on every rank, never a hang
// --------------------------------------

// Runs `call(rank, comm)` on W thread ranks and expects an InvalidArgument naming `param`.
template <typename Call>
void expect_invalid_cp(int world, Call call, std::initializer_list<const char*> params,
                       const std::string& value, std::initializer_list<const char*> phrases) {
  lhtest::expect_invalid(
      [&] {
        lighthouse::run_thread_ranks(world, [&](lighthouse::Communicator& comm) { call(comm); });
      },
      params, value, phrases);
}

struct LocalTensors {
  lighthouse::Tensor q, k, v, out;
  explicit LocalTensors(const lhtest::Shape& s, std::uint64_t seed = 3) {
    q = lhtest::to_tensor(lhtest::random_rows(s, seed), DType::kFloat32, s);
    k = lhtest::to_tensor(lhtest::random_rows(s, seed + 1), DType::kFloat32, s);
    v = lhtest::to_tensor(lhtest::random_normal(s.numel(), seed + 2), DType::kFloat32, s);
    out = lhtest::nan_tensor(DType::kFloat32, s);
  }
  void forward(const Config& config, lighthouse::Communicator& comm, lighthouse::Context& ctx) {
    lighthouse::forward(config, q, k, v, out, ctx, {.threads = 1, .comm = &comm});
  }
};

TEST(ContextParallelErrors, TilesNotDivisibleByTwiceTheRanks) {
  // L3 p4 K512: 4 tiles; cp = 4 makes 8 chunks.
  expect_invalid_cp(4,
                    [](lighthouse::Communicator& comm) {
                      LocalTensors t({1, 2048, 4, 16});
                      lighthouse::Context ctx;
                      t.forward({.levels = 3, .pool = 4, .topk = 512, .scale = {}}, comm, ctx);
                    },
                    {"cp"}, "4", {"whole tiles"});
}

TEST(ContextParallelErrors, RanksNotDividingTheHeads) {
  expect_invalid_cp(4,
                    [](lighthouse::Communicator& comm) {
                      LocalTensors t({1, 128, 2, 16});
                      lighthouse::Context ctx;
                      t.forward({.levels = 1, .pool = 2, .topk = 128, .scale = {}}, comm, ctx);
                    },
                    {"cp"}, "4", {"must divide the number of heads"});
}

TEST(ContextParallelErrors, RanksDisagreeOnTheLength) {
  expect_invalid_cp(2,
                    [](lighthouse::Communicator& comm) {
                      LocalTensors t({1, comm.rank() == 0 ? 1024 : 2048, 2, 16});
                      lighthouse::Context ctx;
                      t.forward({.levels = 2, .pool = 2, .topk = 512, .scale = {}}, comm, ctx);
                    },
                    {"seq"}, "1024 on rank 0, 2048 on rank 1", {"same shapes and configuration"});
}

TEST(ContextParallelErrors, RanksDisagreeOnTheConfiguration) {
  expect_invalid_cp(
      2,
      [](lighthouse::Communicator& comm) {
        LocalTensors t({1, 2048, 2, 16});
        lighthouse::Context ctx;
        t.forward({.levels = 2, .pool = 2, .topk = comm.rank() == 0 ? 512 : 1024, .scale = {}},
                  comm, ctx);
      },
      {"topk"}, "512 on rank 0, 1024 on rank 1", {"same shapes and configuration"});
}

TEST(ContextParallelErrors, OneRankRejectsItsCallTheOthersStopToo) {
  // Rank 1 alone passes an `out` of another shape: its own check fails, the ranks learn it in
  // the agreement check, rank 0 throws RankFailed and the run ends with rank 1's error.
  expect_invalid_cp(2,
                    [](lighthouse::Communicator& comm) {
                      LocalTensors t({1, 1024, 2, 16});
                      if (comm.rank() == 1)
                        t.out = lhtest::nan_tensor(DType::kFloat32, {1, 1000, 2, 16});
                      lighthouse::Context ctx;
                      try {
                        t.forward({.levels = 1, .pool = 2, .topk = 128, .scale = {}}, comm, ctx);
                      } catch (const lighthouse::RankFailed& e) {
                        EXPECT_EQ(comm.rank(), 0);
                        EXPECT_NE(std::string(e.what()).find("rank 1 rejected its call"),
                                  std::string::npos);
                        throw;
                      }
                    },
                    {"out"}, "[1, 1000, 2, 16]", {"must have the shape of q"});
}

TEST(ContextParallelErrors, OddShardLength) {
  expect_invalid_cp(2,
                    [](lighthouse::Communicator& comm) {
                      LocalTensors t({1, 1023, 2, 16});
                      lighthouse::Context ctx;
                      t.forward({.levels = 1, .pool = 2, .topk = 128, .scale = {}}, comm, ctx);
                    },
                    {"q"}, "1023", {"must be even"});
}

TEST(ContextParallelErrors, BackwardWithAnotherSizeOfCommunicator) {
  expect_invalid_cp(
      2,
      [](lighthouse::Communicator& comm) {
        const lhtest::Shape s{1, 1024, 2, 16};
        LocalTensors t(s);
        lighthouse::Context ctx;
        t.forward({.levels = 2, .pool = 2, .topk = 512, .scale = {}}, comm, ctx);
        auto alone = lighthouse::make_thread_communicators(1);
        const lighthouse::Tensor g =
            lhtest::to_tensor(lhtest::random_normal(s.numel(), 9), DType::kFloat32, s);
        lighthouse::Tensor dq = lhtest::nan_tensor(DType::kFloat32, s),
                           dk = lhtest::nan_tensor(DType::kFloat32, s),
                           dv = lhtest::nan_tensor(DType::kFloat32, s);
        lighthouse::backward(ctx, g, dq, dk, dv, {.threads = 1, .comm = alone[0].get()});
      },
      {"comm"}, "rank 0 of 1", {"must be the forward's communicator"});
}

TEST(ContextParallelErrors, BackwardWithoutTheCommunicator) {
  expect_invalid_cp(1,
                    [](lighthouse::Communicator& comm) {
                      const lhtest::Shape s{1, 1024, 2, 16};
                      LocalTensors t(s);
                      lighthouse::Context ctx;
                      t.forward({.levels = 1, .pool = 2, .topk = 128, .scale = {}}, comm, ctx);
                      lighthouse::backward(ctx, t.out, t.q, t.k, t.v, {.threads = 1});
                    },
                    {"comm"}, "null", {"pass its communicator"});
}

TEST(ContextParallelErrors, CausalSelectionIsNotSupportedYet) {
  expect_invalid_cp(
      2,
      [](lighthouse::Communicator& comm) {
        LocalTensors t({1, 2048, 2, 16});
        lighthouse::Context ctx;
        t.forward(
            {.levels = 2, .pool = 2, .topk = 512, .scale = {}, .selection = Selection::kCausal},
            comm, ctx);
      },
      {"selection"}, "causal", {"supports selection = original"});
}

TEST(ContextParallelErrors, ContextBuffersAreRejected) {
  expect_invalid_cp(1,
                    [](lighthouse::Communicator& comm) {
                      LocalTensors t({1, 256, 1, 16});
                      std::vector<unsigned char> buffer(1 << 20);
                      lighthouse::forward(
                          {.levels = 1, .pool = 2, .topk = 128, .scale = {}}, t.q, t.k, t.v, t.out,
                          lighthouse::ContextBuffer{buffer.data(), buffer.size()}, {.comm = &comm});
                    },
                    {"comm"}, "set", {"needs a lighthouse::Context"});
}

}  // namespace
