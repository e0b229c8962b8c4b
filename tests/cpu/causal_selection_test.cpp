// selection = causal on the CPU (docs/SPEC.md), and its content-free control selection = stride:
// the selected indices against the float64 reference's literal reading of the rule
// (tests/support/reference.cpp), outputs and gradients through it; the shape of the selection in
// every mode (S static, a valid pyramid cut, 128 kept per tile and level, keys in order); known
// answers; determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "lighthouse/lighthouse.hpp"
#include "support/library_run.hpp"
#include "support/random.hpp"
#include "support/reference.hpp"

namespace {

using lhtest::Shape;
using lighthouse::Config;
using lighthouse::DType;
using lighthouse::Selection;

Config causal_config(int levels, int pool, int topk) {
  Config c = lhtest::make_config(levels, pool, topk);
  c.selection = Selection::kCausal;
  return c;
}

struct Case {
  Shape shape;
  int levels, pool, topk;
};

std::string case_name(const Case& c) {
  char name[96];
  std::snprintf(name, sizeof name, "B%lldN%lldH%lldD%lld_L%dp%dK%d",
                static_cast<long long>(c.shape.B), static_cast<long long>(c.shape.N),
                static_cast<long long>(c.shape.H), static_cast<long long>(c.shape.D), c.levels,
                c.pool, c.topk);
  return name;
}

// Checks that `indices` ([B, H, S]) is a valid selection of `plan`, whatever the rule: every
// coarsest entry present; an entry below present only under a parent that is refined (has
// children present), a refined entry with all p children present, exactly 128 refined entries
// per tile and level; every token inside exactly one unrefined entry (a level-1 entry or a
// dropped block); position keys strictly increasing along the row. Returns "" or what is wrong.
std::string selection_shape_error(const lighthouse::Plan& plan,
                                  const std::vector<std::int32_t>& indices) {
  const int L = plan.config.levels;
  const std::int64_t p = plan.config.pool, S = plan.S, N = plan.seq;
  const int shift = L - 1;
  for (std::int64_t bh = 0; bh < plan.batch * plan.heads; ++bh) {
    const std::string at = "head row " + std::to_string(bh) + ": ";
    std::vector<std::vector<char>> present(L);
    for (int l = 0; l < L; ++l) present[l].assign(plan.size[l], 0);
    std::vector<std::pair<int, std::int64_t>> rows;  // (level, index) in row order
    for (std::int64_t s = 0; s < S; ++s) {
      const std::int64_t idx = indices[bh * S + s];
      if (idx < 0 || idx >= plan.pyramid_size) return at + "index out of range";
      int l = L - 1;
      while (plan.offset[l] > idx) --l;
      const std::int64_t i = idx - plan.offset[l];
      if (present[l][i]) return at + "pyramid index " + std::to_string(idx) + " twice";
      present[l][i] = 1;
      rows.emplace_back(l, i);
    }
    auto refined = [&](int l, std::int64_t i) { return l > 0 && present[l - 1][i * p]; };
    for (std::int64_t i = 0; i < plan.size[L - 1]; ++i) {
      if (!present[L - 1][i]) return at + "a coarsest entry is missing";
    }
    for (int l = 0; l < L; ++l) {
      std::map<std::int64_t, std::int64_t> refined_per_tile;
      const std::int64_t tile_span = plan.size[l] / plan.tiles;
      for (std::int64_t i = 0; i < plan.size[l]; ++i) {
        if (!present[l][i]) continue;
        if (l + 1 < L && !refined(l + 1, i / p)) return at + "an entry without a refined parent";
        if (l > 0) {
          std::int64_t children = 0;
          for (std::int64_t r = 0; r < p; ++r) children += present[l - 1][i * p + r];
          if (children != 0 && children != p) return at + "a block with some children only";
          if (children == p) ++refined_per_tile[i / tile_span];
        }
      }
      if (l == 0) continue;
      for (std::int64_t t = 0; t < plan.tiles; ++t) {
        if (refined_per_tile[t] != lighthouse::kTileSize) {
          return at + "tile " + std::to_string(t) + " refines " +
                 std::to_string(refined_per_tile[t]) + " entries at level " + std::to_string(l + 1);
        }
      }
    }
    std::vector<int> leaves(N, 0);
    std::int64_t last_key = -1;
    for (const auto& [l, i] : rows) {
      const std::int64_t c = plan.block[l];
      const bool kept = refined(l, i);
      if (!kept) {
        for (std::int64_t t = i * c; t < (i + 1) * c; ++t) ++leaves[t];
      }
      const std::int64_t key =
          kept ? ((c * (i + 1)) << shift) - (std::int64_t{1} << (shift - l)) : (c * i) << shift;
      if (key <= last_key) return at + "position keys not increasing";
      last_key = key;
    }
    for (std::int64_t t = 0; t < N; ++t) {
      if (leaves[t] != 1)
        return at + "token " + std::to_string(t) + " in " + std::to_string(leaves[t]) +
               " unrefined entries";
    }
  }
  return "";
}

const Case kCases[] = {
    {{2, 256, 2, 32}, 2, 2, 128},   // C = 128: everything is kept
    {{1, 512, 3, 8}, 2, 2, 256},    // 2 tiles
    {{3, 640, 1, 16}, 2, 4, 128},   // C = 160 (r = 2: windows 1 and 0)
    {{1, 2048, 1, 8}, 2, 8, 256},   // 2 tiles
    {{2, 1024, 2, 16}, 3, 2, 256},  // 2 tiles
    {{1, 1536, 2, 8}, 3, 2, 384},   // 3 tiles
    {{2, 1024, 2, 8}, 3, 2, 128},   // C = 256
    {{1, 4096, 1, 8}, 3, 4, 256},   // 2 tiles
    {{1, 8192, 1, 8}, 3, 8, 128},  {{1, 1536, 2, 24}, 4, 2, 128},  // C = 192 (r = 3)
    {{1, 8192, 1, 8}, 4, 4, 128},  {{1, 8192, 2, 8}, 2, 4, 128},   // C = 2048 (r = 32)
};

class CausalSelection : public ::testing::TestWithParam<Case> {};

TEST_P(CausalSelection, MatchesReferenceAndIsAValidSelection) {
  const Case& c = GetParam();
  const Config config = causal_config(c.levels, c.pool, c.topk);
  const lhtest::Problem problem =
      lhtest::random_problem(config, c.shape, 3000 + c.shape.N + c.levels * 10 + c.pool);
  const std::vector<std::int32_t> indices = lhtest::select(config, c.shape, problem.q, problem.k);
  const std::vector<double> out =
      lhtest::attend(config, c.shape, problem.q, problem.k, problem.v, indices);
  const lhtest::Gradients grads =
      lhtest::backward(config, c.shape, problem.q, problem.k, problem.v, indices, problem.dout);

  const lhtest::Outputs lib = lhtest::run_library(problem, DType::kFloat64);
  EXPECT_EQ(lib.plan.S, lhtest::gathered_length(config, c.shape.N));  // S is static
  EXPECT_TRUE(lib.indices == indices) << "selected indices differ from the reference";
  EXPECT_EQ(selection_shape_error(lib.plan, lib.indices), "");
  EXPECT_LT(lhtest::rel_l2(lib.out, out), 1e-10);
  EXPECT_LT(lhtest::rel_l2(lib.dq, grads.dq), 1e-10);
  EXPECT_LT(lhtest::rel_l2(lib.dk, grads.dk), 1e-10);
  EXPECT_LT(lhtest::rel_l2(lib.dv, grads.dv), 1e-10);

  const lhtest::Outputs f32 = lhtest::run_library(problem, DType::kFloat32, {}, false);
  EXPECT_TRUE(f32.indices == indices) << "float32 inputs select differently";

  // The original rule on the same inputs picks another set (the test compares something), and
  // that set is a valid selection too.
  lhtest::Problem original = problem;
  original.config.selection = Selection::kOriginal;
  const lhtest::Outputs orig = lhtest::run_library(original, DType::kFloat64, {}, false);
  EXPECT_EQ(selection_shape_error(orig.plan, orig.indices), "");
  const std::int64_t C = c.shape.N / orig.plan.block.back() / orig.plan.tiles;
  if (C > lighthouse::kTileSize) {
    EXPECT_FALSE(orig.indices == lib.indices);
  }
}

INSTANTIATE_TEST_SUITE_P(Cpu, CausalSelection, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return case_name(info.param);
                         });

// Rows whose norms follow `norm(t)` exactly (a scaled unit vector e_0).
std::vector<double> rows_with_norms(const Shape& s, double (*norm)(std::int64_t, std::int64_t)) {
  std::vector<double> x(s.numel(), 0.0);
  for (std::int64_t n = 0; n < s.N; ++n) x[n * s.H * s.D] = lhtest::to_float(norm(n, s.N));
  return x;
}

// The kept coarsest entries of a one-tile, one-head, two-level problem (L = 2: the only level
// with a choice is the coarsest), in position order.
std::vector<std::int64_t> kept_coarse(const lighthouse::Plan& plan,
                                      const std::vector<std::int32_t>& indices) {
  std::vector<std::int64_t> kept;
  for (std::int32_t idx : indices) {
    if (idx < plan.offset[1] && idx % plan.config.pool == 0) kept.push_back(idx / plan.config.pool);
  }
  return kept;
}

// Rising scores: every candidate beats the ones before it, so the query quota takes the first
// 64 and the key quota the next 64. Falling scores: only the first candidate (nothing before
// it) is eligible; every other is turned down until n - 128 are, then the last 127 are kept.
TEST(CausalSelection, KnownAnswersOnMonotoneScores) {
  const Shape s{1, 1024, 1, 4};  // L2 p4 K128: one tile of C = 256 candidates
  const Config config = causal_config(2, 4, 128);
  for (bool rising : {true, false}) {
    SCOPED_TRACE(rising ? "rising norms" : "falling norms");
    lhtest::Problem problem = lhtest::random_problem(config, s, 5);
    auto up = [](std::int64_t n, std::int64_t) { return 1.0 + 0.01 * static_cast<double>(n); };
    auto down = [](std::int64_t n, std::int64_t N) {
      return 1.0 + 0.01 * static_cast<double>(N - n);
    };
    problem.q = rows_with_norms(s, rising ? +up : +down);
    problem.k = rows_with_norms(s, rising ? +up : +down);
    const lhtest::Outputs lib = lhtest::run_library(problem, DType::kFloat32, {}, false);
    std::vector<std::int64_t> expected;
    if (rising) {
      for (std::int64_t i = 0; i < 128; ++i) expected.push_back(i);
    } else {
      expected.push_back(0);
      for (std::int64_t i = 256 - 127; i < 256; ++i) expected.push_back(i);
    }
    EXPECT_EQ(kept_coarse(lib.plan, lib.indices), expected);
    EXPECT_TRUE(lib.indices == lhtest::select(config, s, problem.q, problem.k));
  }
}

// Equal scores never beat each other (eligibility is a strict comparison): with every norm
// equal only the first candidate of each level is eligible and the rest is the forced tail.
TEST(CausalSelection, EqualScoresAgreeWithTheReference) {
  const Shape s{1, 2048, 2, 8};
  const Config config = causal_config(3, 2, 256);
  const lhtest::Problem random = lhtest::random_problem(config, s, 11);
  auto equal_norms = [&](std::vector<double>& x, std::uint64_t seed) {
    lhtest::Rng rng(seed);
    for (std::int64_t r = 0; r < s.N * s.H; ++r) {
      for (std::int64_t d = 0; d < s.D; ++d) {
        x[r * s.D + d] = (rng.next() & 1 ? -1.0 : 1.0) * (0.25 + 0.125 * d);
      }
    }
  };
  for (const char* which : {"q", "k", "q and k"}) {
    SCOPED_TRACE(which);
    lhtest::Problem problem = random;
    if (which[0] == 'q') equal_norms(problem.q, 5);
    if (which[0] == 'k' || which[1] == ' ') equal_norms(problem.k, 6);
    const lhtest::Outputs lib = lhtest::run_library(problem, DType::kFloat32, {}, false);
    EXPECT_TRUE(lib.indices == lhtest::select(config, s, problem.q, problem.k));
    EXPECT_EQ(selection_shape_error(lib.plan, lib.indices), "");
  }
}

// The same bits on a second run and for any thread count, B 2, N 2048, H 2, D 16.
void expect_deterministic_across_runs_and_thread_counts(const Config& config, std::uint64_t seed) {
  const Shape s{2, 2048, 2, 16};
  const lhtest::Problem problem = lhtest::random_problem(config, s, seed);
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    const lhtest::Outputs two = lhtest::run_library(problem, dtype, {.threads = 2});
    for (int threads : {2, 1, 3, 0}) {
      const lhtest::Outputs other = lhtest::run_library(problem, dtype, {.threads = threads});
      EXPECT_TRUE(two.indices == other.indices) << threads;
      EXPECT_TRUE(lhtest::same_bits(two.out, other.out)) << threads;
      EXPECT_TRUE(lhtest::same_bits(two.dq, other.dq)) << threads;
      EXPECT_TRUE(lhtest::same_bits(two.dk, other.dk)) << threads;
      EXPECT_TRUE(lhtest::same_bits(two.dv, other.dv)) << threads;
    }
  }
}

TEST(CausalSelection, DeterministicAcrossRunsAndThreadCounts) {
  expect_deterministic_across_runs_and_thread_counts(causal_config(3, 4, 128), 801);
}

// selection = stride, the causal rule's content-free control (docs/SPEC.md): the reference's
// reading of the rule (candidate j ends one of 128 equal runs), a valid selection, outputs and
// gradients through it, the same indices whatever q and k are, and a layout unlike the causal
// rule's on the same inputs (the test compares something).
class StrideSelection : public ::testing::TestWithParam<Case> {};

TEST_P(StrideSelection, MatchesReferenceAndIgnoresTheScores) {
  const Case& c = GetParam();
  Config config = lhtest::make_config(c.levels, c.pool, c.topk);
  config.selection = Selection::kStride;
  const lhtest::Problem problem =
      lhtest::random_problem(config, c.shape, 3100 + c.shape.N + c.levels * 10 + c.pool);
  const std::vector<std::int32_t> indices = lhtest::select(config, c.shape, problem.q, problem.k);
  const std::vector<double> out =
      lhtest::attend(config, c.shape, problem.q, problem.k, problem.v, indices);
  const lhtest::Gradients grads =
      lhtest::backward(config, c.shape, problem.q, problem.k, problem.v, indices, problem.dout);

  const lhtest::Outputs lib = lhtest::run_library(problem, DType::kFloat64);
  EXPECT_EQ(lib.plan.S, lhtest::gathered_length(config, c.shape.N));
  EXPECT_TRUE(lib.indices == indices) << "selected indices differ from the reference";
  EXPECT_EQ(selection_shape_error(lib.plan, lib.indices), "");
  EXPECT_LT(lhtest::rel_l2(lib.out, out), 1e-10);
  EXPECT_LT(lhtest::rel_l2(lib.dq, grads.dq), 1e-10);
  EXPECT_LT(lhtest::rel_l2(lib.dk, grads.dk), 1e-10);
  EXPECT_LT(lhtest::rel_l2(lib.dv, grads.dv), 1e-10);

  // Other q and k (other norms everywhere): the same layout, in every (batch, head) row.
  lhtest::Problem other =
      lhtest::random_problem(config, c.shape, 3200 + c.shape.N + c.levels * 10 + c.pool);
  for (double& x : other.q) x *= 1000.0;
  const lhtest::Outputs moved = lhtest::run_library(other, DType::kFloat32, {}, false);
  EXPECT_TRUE(moved.indices == lib.indices) << "the stride layout depends on q or k";
  const std::int64_t S = lib.plan.S;
  for (std::int64_t bh = 1; bh < c.shape.B * c.shape.H; ++bh) {
    EXPECT_TRUE(
        std::equal(lib.indices.begin(), lib.indices.begin() + S, lib.indices.begin() + bh * S))
        << "head row " << bh << " differs from row 0";
  }

  lhtest::Problem causal = problem;
  causal.config.selection = Selection::kCausal;
  const lhtest::Outputs by_causal = lhtest::run_library(causal, DType::kFloat64, {}, false);
  const std::int64_t C = c.shape.N / lib.plan.block.back() / lib.plan.tiles;
  if (C > lighthouse::kTileSize) {
    EXPECT_FALSE(by_causal.indices == lib.indices);
  }
}

INSTANTIATE_TEST_SUITE_P(Cpu, StrideSelection, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return case_name(info.param);
                         });

// Known answers: one tile of C = 256 keeps every second block (1, 3, ..., 255); C = 160 keeps the
// last of each of 128 runs of 1 or 2 blocks (32 skipped: 0, 5, 10, ..., the first of every 5);
// three levels with p = 2 keep, below, the second child of every kept block.
TEST(StrideSelection, KnownAnswers) {
  struct Known {
    Shape shape;
    int pool;
    std::vector<std::int64_t> kept;
  };
  std::vector<std::int64_t> every_second, four_in_five;
  for (std::int64_t i = 0; i < 128; ++i) every_second.push_back(2 * i + 1);
  for (std::int64_t i = 0; i < 160; ++i) {
    if ((i + 1) * 128 / 160 > i * 128 / 160) four_in_five.push_back(i);
  }
  ASSERT_EQ(four_in_five.size(), 128u);
  ASSERT_EQ(four_in_five[0], 1);  // 0 ends no run: floor(128 / 160) = 0
  ASSERT_EQ(four_in_five[4], 6);  // 5 is skipped
  ASSERT_EQ(four_in_five.back(), 159);
  for (const Known& k :
       {Known{{1, 1024, 1, 4}, 4, every_second}, Known{{1, 640, 1, 4}, 4, four_in_five}}) {
    Config config = lhtest::make_config(2, k.pool, 128);
    config.selection = Selection::kStride;
    const lhtest::Problem problem = lhtest::random_problem(config, k.shape, 9);
    const lhtest::Outputs lib = lhtest::run_library(problem, DType::kFloat32, {}, false);
    EXPECT_EQ(kept_coarse(lib.plan, lib.indices), k.kept) << k.shape.N;
  }
  // Three levels, p = 2, one tile of C = 256: the coarsest keeps 1, 3, ...; below, the 256
  // children (in position order) keep every second, i.e. the second child of every kept block.
  Config config = lhtest::make_config(3, 2, 128);
  config.selection = Selection::kStride;
  const Shape s{1, 1024, 1, 4};
  const lighthouse::Plan plan = lighthouse::make_plan(config, 1, s.N, 1, s.D);
  const lhtest::Outputs lib =
      lhtest::run_library(lhtest::random_problem(config, s, 10), DType::kFloat32, {}, false);
  std::vector<std::int64_t> middle;  // refined level-1 (0-based) entries
  for (std::int32_t idx : lib.indices) {
    if (idx < plan.offset[1] && idx % 2 == 0) middle.push_back(idx / 2);
  }
  std::sort(middle.begin(), middle.end());
  std::vector<std::int64_t> expected;
  for (std::int64_t b : every_second) expected.push_back(2 * b + 1);
  EXPECT_EQ(middle, expected);
}

TEST(StrideSelection, DeterministicAcrossRunsAndThreadCounts) {
  Config config = lhtest::make_config(3, 4, 128);
  config.selection = Selection::kStride;
  expect_deterministic_across_runs_and_thread_counts(config, 802);
}

}  // namespace
