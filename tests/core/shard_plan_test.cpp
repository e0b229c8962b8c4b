// The arithmetic and rules of context parallelism: the chunk plan, the traffic estimate (the
// issue's table, recomputed), the rules' errors, and shard()/unshard().
#include <gtest/gtest.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "lighthouse/context_parallel.hpp"
#include "support/invalid_argument.hpp"
#include "support/random.hpp"

namespace {

using lighthouse::Config;
using lighthouse::DType;
using lighthouse::make_shard_plan;

constexpr std::int64_t kMiB = 1 << 20;

TEST(ShardPlan, ChunksHoldWholeTilesOfTheWholePlan) {
  const Config config{.levels = 3, .pool = 4, .topk = 4096, .scale = {}};
  const auto sp = make_shard_plan(config, 1, 512 * 1024, 8, 128, 8);
  EXPECT_EQ(sp.plan.S, 65536);
  EXPECT_EQ(sp.chunk.seq, 32768);
  EXPECT_EQ(sp.chunk.tiles, 2);
  EXPECT_EQ(sp.chunk.tile_entries, sp.plan.tile_entries);
  EXPECT_EQ(sp.chunk_rows * 16, sp.plan.S);
  EXPECT_EQ(sp.local_seq, 65536);
  EXPECT_EQ(sp.heads_per_rank, 1);
  EXPECT_EQ(sp.edge_tokens, 15);
  EXPECT_EQ(sp.edge_levels, 2);
  EXPECT_EQ(sp.chunk.scale, sp.plan.scale);
}

// The issue's table (N = 512K, H = 8, D = 128, bf16, L3 p4 K4096), forward, per rank: the
// all-to-alls of q, k, v and out move 128 MiB at W = 2 and 56 MiB at W = 8; Ulysses 1 GiB and
// 448 MiB. The edges and the check add a few KiB.
TEST(ShardPlan, TrafficOfTheIssuesTable) {
  const Config config{.levels = 3, .pool = 4, .topk = 4096, .scale = {}};
  struct Row {
    int world;
    std::int64_t ours, ulysses;
  };
  for (const Row& row : {Row{2, 128 * kMiB, 1024 * kMiB}, Row{8, 56 * kMiB, 448 * kMiB}}) {
    const auto sp = make_shard_plan(config, 1, 512 * 1024, 8, 128, row.world);
    const auto f = sp.forward_traffic(DType::kBFloat16);
    EXPECT_EQ(f.all_to_all, row.ours) << "cp = " << row.world;
    EXPECT_EQ(sp.ulysses_forward_traffic(DType::kBFloat16).total(), row.ulysses);
    // Edges: 2 chunks x 8 heads x 2 levels x 128 x 2 bytes to each other rank.
    EXPECT_EQ(f.edges, (row.world - 1) * 2 * 8 * 2 * 128 * 2);
    EXPECT_EQ(f.check, (row.world - 1) * 128);
    const auto b = sp.backward_traffic(DType::kBFloat16);
    EXPECT_EQ(b.all_to_all, row.ours);
    EXPECT_EQ(b.edges, (row.world - 1) * 2 * 15 * 8 * 128 * 2);
  }
  // One rank sends nothing.
  const auto alone = make_shard_plan(config, 1, 512 * 1024, 8, 128, 1);
  EXPECT_EQ(alone.forward_traffic(DType::kBFloat16).total(), 0);
}

TEST(ShardPlan, Rules) {
  const Config l3{.levels = 3, .pool = 4, .topk = 512, .scale = {}};  // 4 tiles
  lhtest::expect_invalid([&] { make_shard_plan(l3, 1, 8192, 4, 16, 0); }, {"cp"}, "0", {">= 1"});
  lhtest::expect_invalid([&] { make_shard_plan(l3, 1, 8192, 4, 16, 4); }, {"cp"}, "4",
                         {"whole tiles", "divisible by 8"});
  lhtest::expect_invalid([&] { make_shard_plan(l3, 1, 8192, 3, 16, 2); }, {"cp"}, "2",
                         {"must divide the number of heads H = 3"});
  lhtest::expect_invalid(
      [&] {
        make_shard_plan({.levels = 1, .pool = 2, .topk = 128, .scale = {}}, 1, 100, 4, 16, 4);
      },
      {"seq"}, "100", {"divisible by 8"});
  // The whole plan's own rules name the whole sequence.
  lhtest::expect_invalid([&] { make_shard_plan(l3, 1, 4008, 4, 16, 2); }, {"seq"},
                         "4008 (the whole sequence: cp = 2 ranks x 2004 tokens)", {"divisible"});
  for (const auto& [selection, name] : {std::pair{lighthouse::Selection::kCausal, "causal"},
                                        std::pair{lighthouse::Selection::kStride, "stride"}}) {
    lhtest::expect_invalid(
        [&] {
          make_shard_plan(
              {.levels = 3, .pool = 4, .topk = 512, .scale = {}, .selection = selection}, 1, 8192,
              4, 16, 2);
        },
        {"selection"}, name, {"original only"});
  }
}

TEST(Shard, RoundTripAndChunkOrder) {
  const lhtest::Shape whole{2, 16, 3, 4}, local{2, 4, 3, 4};
  std::vector<double> values(whole.numel());
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<double>(i);
  const lighthouse::Tensor w = lhtest::to_tensor(values, DType::kFloat64, whole);
  const lighthouse::Tensor back = lhtest::nan_tensor(DType::kFloat64, whole);
  const int world = 4;  // 8 chunks of 2 tokens
  for (int r = 0; r < world; ++r) {
    const lighthouse::Tensor l = lhtest::nan_tensor(DType::kFloat64, local);
    lighthouse::shard(w, world, r, l);
    // Local token 0 is whole token 2 r (chunk r), local token 2 is whole 2 (7 - r) (chunk 7 - r).
    const double* x = l.data<double>();
    EXPECT_EQ(x[0], values[(2 * r) * 12]);
    EXPECT_EQ(x[2 * 12], values[(2 * (7 - r)) * 12]);
    lighthouse::unshard(l, world, r, back);
  }
  EXPECT_TRUE(lhtest::same_bits(lhtest::to_vector(back), values));
  const lighthouse::Tensor wrong = lhtest::nan_tensor(DType::kFloat64, {2, 5, 3, 4});
  lhtest::expect_invalid([&] { lighthouse::shard(w, world, 0, wrong); }, {"local"}, "[2, 5, 3, 4]",
                         {"N / cp"});
  lhtest::expect_invalid([&] { lighthouse::shard(w, world, 4, wrong); }, {"rank"}, "4",
                         {"must be in [0, cp = 4)"});
}

}  // namespace
