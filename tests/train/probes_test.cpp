// Passkey instances are well formed and scored over the ten digits; the leak probe gives bitwise
// equal losses for a dense (causal) model and sees the future through Lighthouse's selection.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "train/probes.hpp"

namespace {

using namespace lighthouse::train;

TEST(Passkey, SequenceHidesTheDigitAtTheDepthAndEndsWithTheQuery) {
  Rng rng(5);
  for (double depth : {0.0, 0.5, 1.0}) {
    int digit = -1;
    const auto seq = passkey_sequence(rng, 300, depth, &digit);
    ASSERT_EQ(seq.size(), 300u);
    ASSERT_GE(digit, 1);  // as the corpora's values: 1000..9999
    ASSERT_LE(digit, 9);
    const std::string text(seq.begin(), seq.end());
    const auto at = text.find("set ");
    ASSERT_NE(at, std::string::npos);
    const std::string key = text.substr(at + 4, 3);
    EXPECT_EQ(text.substr(at + 7, 4), " = " + std::to_string(digit));
    EXPECT_EQ(text.substr(300 - 10), "\nask " + key + ": ");
    // The needle is the only place with digits; its offset follows the depth.
    EXPECT_EQ(std::count_if(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }),
              4);
    const double filler = 300 - 16 - 10;  // needle "set abc = 1234.\n", query "\nask abc: "
    EXPECT_NEAR(static_cast<double>(at), depth * filler, 1.0) << depth;
  }
  EXPECT_THROW(passkey_sequence(rng, 32, 0.5, nullptr), lighthouse::InvalidArgument);
}

TEST(Passkey, RecallFormatHidesTheFactInADocumentOfTheCorpus) {
  Rng rng(6);
  for (double depth : {0.0, 0.3, 1.0}) {
    int digit = -1;
    const auto seq = passkey_sequence(rng, 600, depth, &digit, CorpusKind::kRecall);
    ASSERT_EQ(seq.size(), 600u);
    const std::string text(seq.begin(), seq.end());
    // needle "\nset KQV1234.\n" (14) at the depth of the filler, query "\nask KQV" (8) last
    const double filler = 600 - 14 - 8;
    const auto at = static_cast<std::size_t>(std::floor(depth * filler));
    ASSERT_EQ(text.substr(at, 5), "\nset ");
    const std::string key = text.substr(at + 5, 3);
    for (char c : key) EXPECT_TRUE(c >= 'A' && c <= 'Z') << key;
    EXPECT_EQ(text[at + 8], '0' + digit);
    EXPECT_GE(digit, 1);
    EXPECT_EQ(text.substr(600 - 8), "\nask " + key);
    // The key is written twice, in the needle and the query; the filler is the corpus's own
    // text: a document's header, other facts and their queries.
    std::size_t mentions = 0;
    for (auto p = text.find(key); p != std::string::npos; p = text.find(key, p + 1)) ++mentions;
    EXPECT_EQ(mentions, 2u);
    const std::string rest = text.substr(0, at) + text.substr(at + 14);
    EXPECT_EQ(rest.substr(0, 7), "record\n");
    EXPECT_NE(rest.find("\nset "), std::string::npos);
    EXPECT_NE(rest.find("\nask "), std::string::npos);
  }
}

TEST(Passkey, EvaluationCountsEveryCellAndRestoresTheAttention) {
  ModelConfig mc;
  mc.dim = 16;
  mc.heads = 2;
  mc.layers = 2;
  const auto owned = make_cpu_model(mc, 3, {}, make_cpu_attention(1));
  LanguageModel& model = *owned;
  lighthouse::Config sparse;
  sparse.levels = 2;
  sparse.pool = 2;
  sparse.topk = 128;
  model.set_attention(layer_attention(2, sparse, {}));
  const PasskeyReport r = passkey_eval(model, {64, 128}, {0.0, 0.5, 1.0}, 3, 9);
  ASSERT_EQ(r.cells.size(), 6u);
  EXPECT_EQ(r.trials, 18);
  EXPECT_GE(r.accuracy(), 0.0);
  EXPECT_LE(r.accuracy(), 1.0);
  EXPECT_EQ(r.cells[4].length, 128);
  EXPECT_EQ(r.cells[4].depth, 0.5);
  EXPECT_EQ(model.attention()[0].levels, 2);
  // The same seed gives the same instances, hence the same score.
  EXPECT_EQ(passkey_eval(model, {64, 128}, {0.0, 0.5, 1.0}, 3, 9).correct, r.correct);
  double cells_loss = 0;
  for (const PasskeyCell& c : r.cells) cells_loss += c.loss_sum;
  EXPECT_DOUBLE_EQ(r.loss_sum, cells_loss);
  EXPECT_GT(r.loss(), 0.0);
}

TEST(Passkey, LossIsMinusLogProbabilityOfTheDigitOverAllBytes) {
  ModelConfig mc;
  mc.dim = 16;
  mc.heads = 2;
  mc.layers = 1;
  const auto owned = make_cpu_model(mc, 5, {}, make_cpu_attention(1));
  LanguageModel& model = *owned;
  const PasskeyReport r = passkey_eval(model, {80}, {0.5}, 1, 11, CorpusKind::kRecall);
  ASSERT_EQ(r.trials, 1);
  // The same instance, drawn as passkey_eval draws it.
  Rng rng = passkey_rng(11);
  int digit = 0;
  const std::vector<std::int32_t> seq = passkey_sequence(rng, 80, 0.5, &digit, CorpusKind::kRecall);
  std::vector<std::int32_t> targets(80, -1);
  std::vector<double> losses(80);
  model.evaluate(seq.data(), targets.data(), 1, 80, losses.data());
  std::vector<float> z(static_cast<std::size_t>(mc.vocab));
  model.logits_rows({79}, z.data());
  double m = z[0], sum = 0;
  for (float v : z) m = std::max(m, static_cast<double>(v));
  for (float v : z) sum += std::exp(static_cast<double>(v) - m);
  const double expected = std::log(sum) + m - z['0' + digit];
  EXPECT_NEAR(r.loss(), expected, 1e-5 * expected);
  int best = 0;
  for (int d = 1; d < 10; ++d) best = z['0' + d] > z['0' + best] ? d : best;
  EXPECT_EQ(r.correct, best == digit ? 1 : 0);
}

TEST(LeakProbe, DenseIsBitwiseCausalAndLighthouseSeesTheFuture) {
  ModelConfig mc;
  mc.dim = 32;
  mc.heads = 2;
  mc.layers = 2;
  mc.init_std = 0.2;  // large weights: attention scores and q/k norms vary a lot
  const auto owned = make_cpu_model(mc, 4, {}, make_cpu_attention(1));
  LanguageModel& model = *owned;
  const TokenStream heldout = generate_corpus(3000, 6, 1000);
  Rng rng(1);
  const LeakProbeResult dense = leak_probe(model, all_dense(2), heldout, 256, 16, rng);
  ASSERT_EQ(dense.samples.size(), 16u);
  for (const auto& s : dense.samples) {
    EXPECT_EQ(s.real, s.corrupt) << "position " << s.position;  // bitwise, not approximately
  }
  EXPECT_EQ(dense.mean_diff, 0.0);
  EXPECT_EQ(dense.ci95, 0.0);

  lighthouse::Config sparse;
  sparse.levels = 2;
  sparse.pool = 4;
  sparse.topk = 128;  // S = 2048/4 + 4 * 128 = 1024 of 2048
  const LeakProbeResult lh =
      leak_probe(model, layer_attention(2, sparse, {}), heldout, 2048, 8, rng);
  const auto differs = std::count_if(lh.samples.begin(), lh.samples.end(),
                                     [](const auto& s) { return s.real != s.corrupt; });
  EXPECT_GT(differs, 0) << "the probe never changed a loss: the future was not replaced?";
  EXPECT_GT(lh.ci95, 0.0);
  EXPECT_EQ(model.attention()[0].levels, 1);  // restored (the model started dense)
}

}  // namespace
