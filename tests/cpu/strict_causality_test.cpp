// Strict causality (issue 11): for every position t, the output at t and every gradient that flows
// from it must not change, bit for bit, when q, k or v change at positions > t -- norms included,
// so that the selection itself is under test. For each t: outputs at positions <= t (every batch
// and head) are compared bitwise, and the backward pass runs with dout zero after t and all of
// dq, dk, dv are compared bitwise. selection = causal and stride must pass; selection = original
// must be caught leaking by the same check (so the check can fail).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "lighthouse/lighthouse.hpp"
#include "support/library_run.hpp"
#include "support/random.hpp"

namespace {

using lhtest::Shape;
using lighthouse::Config;
using lighthouse::DType;
using lighthouse::Selection;

struct Case {
  Shape shape;
  int levels, pool, topk;
  DType dtype;
};

std::string case_name(const Case& c) {
  char name[96];
  std::snprintf(name, sizeof name, "B%lldN%lldH%lld_L%dp%dK%d_%s",
                static_cast<long long>(c.shape.B), static_cast<long long>(c.shape.N),
                static_cast<long long>(c.shape.H), c.levels, c.pool, c.topk,
                lighthouse::dtype_name(c.dtype));
  return name;
}

std::int64_t row(const Shape& s, std::int64_t b, std::int64_t n, std::int64_t h) {
  return ((b * s.N + n) * s.H + h) * s.D;
}

// The ways positions after t change: every later row of q, k and v redrawn with norms spread over
// six orders of magnitude; only the next token's q and k scaled up 1000x (the within-block
// channel: the next token sits in the same blocks as t); every later q and k row set to zero
// (the smallest norm there is).
enum class Change { kRedrawAll, kNextTokenLoud, kLaterSilent };
constexpr Change kChanges[] = {Change::kRedrawAll, Change::kNextTokenLoud, Change::kLaterSilent};
const char* change_name(Change c) {
  switch (c) {
    case Change::kRedrawAll:
      return "q, k, v after t redrawn";
    case Change::kNextTokenLoud:
      return "q and k of t+1 scaled 1000x";
    case Change::kLaterSilent:
      return "q and k after t set to 0";
  }
  return "";
}

lhtest::Problem changed_after(const lhtest::Problem& base, std::int64_t t, Change change,
                              std::uint64_t seed) {
  const Shape& s = base.shape;
  lhtest::Problem p = base;
  lhtest::Rng rng(seed);
  for (std::int64_t b = 0; b < s.B; ++b) {
    for (std::int64_t n = t + 1; n < s.N; ++n) {
      if (change == Change::kNextTokenLoud && n > t + 1) break;
      for (std::int64_t h = 0; h < s.H; ++h) {
        const double gain_q = std::exp(3.0 * rng.normal()), gain_k = std::exp(3.0 * rng.normal());
        for (std::int64_t d = 0; d < s.D; ++d) {
          double& q = p.q[row(s, b, n, h) + d];
          double& k = p.k[row(s, b, n, h) + d];
          switch (change) {
            case Change::kRedrawAll:
              q = lhtest::to_float(gain_q * rng.normal());
              k = lhtest::to_float(gain_k * rng.normal());
              p.v[row(s, b, n, h) + d] = lhtest::to_float(3.0 * rng.normal());
              break;
            case Change::kNextTokenLoud:
              q = lhtest::to_float(1000.0 * q), k = lhtest::to_float(1000.0 * k);
              break;
            case Change::kLaterSilent:
              q = 0.0, k = 0.0;
              break;
          }
        }
      }
    }
  }
  return p;
}

// dout with every position after t set to zero.
std::vector<double> dout_until(const lhtest::Problem& p, std::int64_t t) {
  const Shape& s = p.shape;
  std::vector<double> d = p.dout;
  for (std::int64_t b = 0; b < s.B; ++b) {
    std::fill(d.begin() + row(s, b, t + 1, 0), d.begin() + row(s, b, s.N, 0), 0.0);
  }
  return d;
}

// The first way in which `changed` differs from `base` where strict causality forbids it, or ""
// when none does: outputs at positions <= t (any batch and head), or any gradient element.
std::string violation(const Shape& s, std::int64_t t, const lhtest::Outputs& base,
                      const lhtest::Outputs& changed) {
  for (std::int64_t b = 0; b < s.B; ++b) {
    const std::int64_t from = row(s, b, 0, 0), to = row(s, b, t + 1, 0);
    if (std::memcmp(&base.out[from], &changed.out[from], (to - from) * sizeof(double)) != 0) {
      return "an output at a position <= t changed (batch " + std::to_string(b) + ")";
    }
  }
  if (!lhtest::same_bits(base.dq, changed.dq)) return "dq changed";
  if (!lhtest::same_bits(base.dk, changed.dk)) return "dk changed";
  if (!lhtest::same_bits(base.dv, changed.dv)) return "dv changed";
  return "";
}

// The positions t tried: block boundaries of every level, the first and last tokens, a token
// inside a block, the middle and a few drawn at random.
std::vector<std::int64_t> positions(const Case& c, std::uint64_t seed) {
  std::int64_t coarse = 1;
  for (int l = 1; l < c.levels; ++l) coarse *= c.pool;
  const std::int64_t N = c.shape.N;
  std::vector<std::int64_t> ts = {0,          1,      c.pool - 1, c.pool,
                                  coarse - 1, coarse, coarse + 1, 3 * coarse + 2,
                                  N / 2 - 1,  N / 2,  N - coarse, N - 2};
  lhtest::Rng rng(seed);
  for (int i = 0; i < 4; ++i) ts.push_back(rng.below(N - 1));
  std::vector<std::int64_t> valid;
  for (std::int64_t t : ts) {
    if (t >= 0 && t < N - 1) valid.push_back(t);  // t = N-1 has no future to change
  }
  return valid;
}

// Runs every (t, change) pair of `c` under `selection` (until the first break with
// `stop_at_first`); returns how many of them broke strict causality and, through `first`, the
// first such break.
int count_violations(const Case& c, Selection selection, std::string* first,
                     bool stop_at_first = false,
                     lighthouse::Scorer scorer = lighthouse::Scorer::kNorm) {
  const Shape& s = c.shape;
  Config config{.levels = c.levels, .pool = c.pool, .topk = c.topk, .scale = {}};
  config.selection = selection;
  config.scorer = scorer;
  const lhtest::Problem problem =
      lhtest::random_problem(config, s, 4200 + c.levels * 10 + c.pool + s.N);
  // One thread: many small calls; thread-count independence is determinism_test's job.
  const lighthouse::Options one_thread{.threads = 1};
  int broken = 0;
  for (std::int64_t t : positions(c, 77 + s.N)) {
    lhtest::Problem base = problem;
    base.dout = dout_until(problem, t);
    const lhtest::Outputs before = lhtest::run_library(base, c.dtype, one_thread);
    for (Change change : kChanges) {
      const lhtest::Problem other = changed_after(base, t, change, 91 * t + 5);
      const lhtest::Outputs after = lhtest::run_library(other, c.dtype, one_thread);
      const std::string why = violation(s, t, before, after);
      if (!why.empty()) {
        if (broken++ == 0) {
          *first = "t = " + std::to_string(t) + ", " + change_name(change) + ": " + why;
        }
        if (stop_at_first) return broken;
      }
    }
  }
  return broken;
}

// Several levels, pools and tiles, B and H > 1, both CPU dtypes.
const Case kCases[] = {
    {{2, 1024, 2, 8}, 2, 2, 256, DType::kFloat32},   // 2 tiles of 256
    {{2, 1024, 2, 16}, 2, 4, 128, DType::kFloat64},  // C = 256
    {{1, 2048, 3, 8}, 2, 8, 128, DType::kFloat32},   // C = 256, 1024 candidates below
    {{2, 2048, 2, 8}, 3, 4, 128, DType::kFloat32},   // C = 128
    {{1, 2048, 2, 8}, 3, 2, 256, DType::kFloat64},   // 2 tiles of 256
    {{2, 1024, 1, 8}, 4, 2, 128, DType::kFloat32},   // C = 128, three selection levels
    {{1, 4096, 2, 8}, 4, 2, 256, DType::kFloat32},   // 2 tiles of 256
    {{1, 8192, 1, 8}, 3, 8, 128, DType::kFloat32},   // C = 128, 1024 candidates below (p = 8)
};

class StrictCausality : public ::testing::TestWithParam<Case> {};

TEST_P(StrictCausality, CausalSelectionIgnoresEveryFutureChange) {
  std::string first;
  const int broken = count_violations(GetParam(), Selection::kCausal, &first);
  EXPECT_EQ(broken, 0) << "selection = causal leaked; first: " << first;
}

// The content-free control reads no scores: its layout is fixed by the plan, so the output is
// causal "given the selection" for every input.
TEST_P(StrictCausality, StrideSelectionIgnoresEveryFutureChange) {
  std::string first;
  const int broken = count_violations(GetParam(), Selection::kStride, &first);
  EXPECT_EQ(broken, 0) << "selection = stride leaked; first: " << first;
}

// The same check catches the original selection: a later token's norm changes which earlier
// blocks are refined.
TEST_P(StrictCausality, OriginalSelectionIsCaughtLeaking) {
  std::string first;
  const int broken = count_violations(GetParam(), Selection::kOriginal, &first, true);
  std::printf("[ leaks    ] %s: original selection caught at %s\n", case_name(GetParam()).c_str(),
              first.c_str());
  EXPECT_GT(broken, 0) << "the check did not catch the original selection's leak";
}

INSTANTIATE_TEST_SUITE_P(Cpu, StrictCausality, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return case_name(info.param);
                         });

// The dilated scorer's token score at t is the norm of a causal attention output at t over the
// tokens t, t - δ, t - 2δ, ...: a function of positions <= t, as the norm score is, so the causal
// rule stays strictly causal with it. Checked the same way; the original rule still leaks.
TEST(StrictCausality, CausalSelectionWithTheDilatedScorer) {
  const Case cases[] = {{{1, 2048, 2, 8}, 3, 4, 128, DType::kFloat32},
                        {{2, 1024, 2, 16}, 2, 4, 128, DType::kFloat64}};
  for (const Case& c : cases) {
    std::string first;
    EXPECT_EQ(count_violations(c, Selection::kCausal, &first, false,
                               lighthouse::Scorer::kDilated), 0)
        << case_name(c) << " dilated, selection = causal leaked; first: " << first;
    EXPECT_GT(count_violations(c, Selection::kOriginal, &first, true,
                               lighthouse::Scorer::kDilated), 0)
        << case_name(c) << " dilated: the check did not catch the original selection's leak";
  }
}

// Dense attention (levels == 1) has no selection: strictly causal in every mode.
TEST(StrictCausality, DenseIsCausalUnderEitherSelection) {
  const Case dense{{2, 256, 2, 8}, 1, 2, 128, DType::kFloat32};
  for (Selection selection : {Selection::kOriginal, Selection::kCausal, Selection::kStride}) {
    std::string first;
    EXPECT_EQ(count_violations(dense, selection, &first), 0)
        << lighthouse::selection_name(selection) << ": " << first;
  }
}

}  // namespace
