// The training loop: a tiny model overfits a tiny corpus; the same seed gives bitwise identical
// losses through the Lighthouse -> dense switch; accumulation equals a bigger batch.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <string>
#include <vector>

#include "lighthouse/error.hpp"
#include "tiny_configs.hpp"
#include "train/trainer.hpp"

namespace {

using lhtest::tiny_config;
using lhtest::two_stage_config;
using lighthouse::train::TokenStream;
using lighthouse::train::TrainConfig;
using lighthouse::train::Trainer;

TokenStream bytes_of(const std::string& text) {
  TokenStream t(text.begin(), text.end());
  t.push_back(lighthouse::train::kSeparator);
  return t;
}

TEST(TrainLoop, TinyModelOverfitsTinyCorpus) {
  const TokenStream data = bytes_of("the quick brown fox jumps over the lazy dog 0123456789.");
  TrainConfig c = tiny_config();
  Trainer trainer(c, &data, &data, lighthouse::train::make_cpu_attention(1));
  const double first = trainer.step().loss;
  double last = first;
  while (!trainer.done()) last = trainer.step().loss;
  EXPECT_GT(first, 5.0);  // ~ log(257) at initialisation
  EXPECT_LT(last, 0.3) << "started at " << first;
  EXPECT_LT(trainer.evaluate().dense_loss, 0.3);
}

// Every worker pool on `threads` threads: the attention's and OpenMP's (matmuls, layers).
std::vector<double> run_losses(const TrainConfig& c, const TokenStream& data, int threads) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  Trainer trainer(c, &data, &data, lighthouse::train::make_cpu_attention(threads));
  std::vector<double> losses;
  while (!trainer.done()) {
    const auto r = trainer.step();
    EXPECT_EQ(r.stage, r.step <= c.stage1_steps ? 1 : 2);
    losses.push_back(r.loss);
  }
  losses.push_back(trainer.evaluate().dense_loss);
  omp_set_num_threads(saved);
  return losses;
}

TEST(TrainLoop, SameSeedSameLossesThroughTheStageSwitch) {
  const TokenStream data = lighthouse::train::generate_corpus(4000, 7, 1000);
  const TrainConfig c = two_stage_config();
  const auto a = run_losses(c, data, 1);
  const auto b = run_losses(c, data, 2);  // thread count must not matter either
  ASSERT_EQ(a.size(), 6u);
  EXPECT_EQ(a, b);
  TrainConfig other = c;
  other.seed = 2;
  EXPECT_NE(run_losses(other, data, 1), a);
}

TEST(TrainLoop, EvaluationIsDenseAndReportsTheTrainingAttention) {
  const TokenStream data = lighthouse::train::generate_corpus(2000, 8, 1000);
  Trainer trainer(two_stage_config(), &data, &data, lighthouse::train::make_cpu_attention(1));
  const auto e = trainer.evaluate();
  ASSERT_TRUE(e.train_attention_loss.has_value());
  EXPECT_NE(*e.train_attention_loss, e.dense_loss);
  EXPECT_EQ(trainer.model().attention()[0].levels, 2);  // restored after evaluation
  while (!trainer.done()) trainer.step();
  EXPECT_FALSE(trainer.evaluate().train_attention_loss.has_value());
  EXPECT_EQ(trainer.model().attention()[0].levels, 1);
  EXPECT_THROW(trainer.step(), lighthouse::Error);
}

// On the recall corpus the evaluation reports the answers' loss and their first digits' loss:
// both present and, untrained, near ln 257 (the model spreads its guess over the 257 bytes);
// data without the corpus's queries gives neither.
TEST(TrainLoop, EvaluationReportsTheAnswersAndTheirFirstDigits) {
  const TokenStream data =
      lighthouse::train::generate_corpus(20000, 8, 1000, lighthouse::train::CorpusKind::kRecall);
  TrainConfig c = two_stage_config();
  Trainer trainer(c, &data, &data, lighthouse::train::make_cpu_attention(1));
  const auto e = trainer.evaluate();
  ASSERT_TRUE(e.recall_loss.has_value());
  ASSERT_TRUE(e.recall_first_loss.has_value());
  EXPECT_GT(e.recall_tokens, 0);
  EXPECT_NEAR(*e.recall_loss, std::log(257.0), 0.7);
  EXPECT_NEAR(*e.recall_first_loss, std::log(257.0), 0.7);
  EXPECT_NE(*e.recall_first_loss, *e.recall_loss);
  // The distance classes split the first digits: their counts and losses add up to the whole.
  std::int64_t counted = 0;
  double sum = 0;
  for (std::size_t k = 0; k < e.recall_first_by_distance.size(); ++k) {
    const std::int64_t n = e.recall_first_by_distance_tokens[k];
    EXPECT_EQ(e.recall_first_by_distance[k].has_value(), n > 0) << k;
    counted += n;
    if (n > 0) sum += *e.recall_first_by_distance[k] * static_cast<double>(n);
  }
  EXPECT_GT(e.recall_first_by_distance_tokens[0], 0);  // short sequences: near keys
  EXPECT_EQ(e.recall_first_by_distance_tokens[3], 0);  // nothing 8K back in a 1K document
  EXPECT_GT(counted, 0);
  EXPECT_NEAR(sum / static_cast<double>(counted), *e.recall_first_loss, 1e-9);
  // Other data than the built-in corpus: neither.
  const TokenStream zeros(4000, 'a');
  Trainer plain(c, &zeros, &zeros, lighthouse::train::make_cpu_attention(1));
  const auto p = plain.evaluate();
  EXPECT_FALSE(p.recall_loss.has_value());
  EXPECT_FALSE(p.recall_first_loss.has_value());
}

TEST(TrainLoop, AccumulationMatchesALargerBatch) {
  const TokenStream data = lighthouse::train::generate_corpus(3000, 9, 500);
  TrainConfig big = tiny_config();
  big.stage2_steps = 2;
  TrainConfig small = big;
  small.batch = 1;
  small.accum = 2;
  Trainer a(big, &data, &data, lighthouse::train::make_cpu_attention(1));
  Trainer b(small, &data, &data, lighthouse::train::make_cpu_attention(1));
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(a.step().loss, b.step().loss, 1e-5);
  const auto pa = a.model().read_params();
  const auto pb = b.model().read_params();
  for (std::size_t i = 0; i < pa.size(); ++i) {
    for (std::size_t j = 0; j < pa[i].size(); ++j) {
      ASSERT_NEAR(pa[i][j], pb[i][j], 1e-5) << a.model().params()[i].name;
    }
  }
}

TEST(TrainLoop, RejectsAStageOneAttentionThatDoesNotFitSeq) {
  TrainConfig c = two_stage_config();
  c.seq = 128;  // below the smallest valid length: dense attention (any sequence length)
  EXPECT_NO_THROW(c.validate());
  c = two_stage_config();
  c.stage1_steps = c.stage2_steps = 0;
  EXPECT_THROW(c.validate(), lighthouse::InvalidArgument);
}

}  // namespace
