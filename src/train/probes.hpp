// Two evaluations of a trained model, beyond the held-out loss.
//
// Passkey retrieval (as in the paper): a needle "set <key> = <D><3 digits>.\n" in the built-in
// corpus's own form ("set <KEY><D><3 digits>.\n" for the recall kind) is hidden at a depth
// (0..100%; the trainer uses 10, 30, 50, 70, 90%) in filler of a given context length (facts:
// random letters; recall: a document of the corpus, with its own facts and queries, whose keys
// differ from the needle's), which
// ends with the query "ask <key>: " ("ask <KEY>"). The model must predict D (1..9, as the corpora's
// values start) at the last position: correct when D has the largest logit among the ten digit
// bytes '0'..'9' (chance 1 in 9); the report also keeps -log p(D). Always dense attention (the
// model that ships).
//
// Leak probe (the spec's causality section): Lighthouse's selection ranks pooled blocks that
// extend past the query, so a stage-1 model may read information about token t+1 through
// positions <= t. At sampled positions t, compare the loss of predicting token t+1 under the
// stage-1 attention with the real input against the same with every input token after t replaced
// by random bytes (targets unchanged). A causal model gives bitwise equal losses; a positive
// mean difference (corrupt - real) means the real future helped.
#pragma once

#include <cstdint>
#include <vector>

#include "lighthouse/config.hpp"
#include "train/data.hpp"
#include "train/language_model.hpp"

namespace lighthouse::train {

struct PasskeyCell {
  std::int64_t length = 0;
  double depth = 0;  // 0 = needle at the start, 1 = right before the query
  int correct = 0, trials = 0;
  double loss_sum = 0;  // -log p(digit) summed over the trials
  double loss() const { return trials > 0 ? loss_sum / trials : 0.0; }
};

struct PasskeyReport {
  std::vector<PasskeyCell> cells;
  int correct = 0, trials = 0;
  double loss_sum = 0;
  double accuracy() const { return trials > 0 ? static_cast<double>(correct) / trials : 0.0; }
  // Mean -log p(digit) (nats, over all 257 bytes): ln 9 = 2.197 for a model that knows only that
  // a digit 1..9 comes; comparable with the evaluations' first-digit loss on the recall corpus.
  double loss() const { return trials > 0 ? loss_sum / trials : 0.0; }
};

// `trials` random instances per (length, depth) from `seed` (the same instances for every model
// given the same seed). Each length must be >= 64. The model's attention is restored afterwards.
PasskeyReport passkey_eval(LanguageModel& model, const std::vector<std::int64_t>& lengths,
                           const std::vector<double>& depths, int trials, std::uint64_t seed,
                           CorpusKind kind = CorpusKind::kFacts);

// The generator passkey_eval draws its instances from, in order, for `seed`.
Rng passkey_rng(std::uint64_t seed);

// The sequence of one passkey instance (exposed for tests): `length` tokens whose last position
// must predict '0' + *digit.
std::vector<std::int32_t> passkey_sequence(Rng& rng, std::int64_t length, double depth, int* digit,
                                           CorpusKind kind = CorpusKind::kFacts);

struct LeakProbeResult {
  struct Sample {
    std::int64_t position = 0;
    double real = 0, corrupt = 0;  // loss of predicting token position + 1
  };
  std::vector<Sample> samples;
  double mean_diff = 0;  // mean of corrupt - real
  double ci95 = 0;       // half-width of the 95% confidence interval of the mean (normal approx.)
  double mean_real = 0, mean_corrupt = 0;
};

// `samples` positions, 8 per held-out sequence of length `seq` (consecutive sequences of the
// held-out stream), under `attention` (one Config per layer). Random positions and bytes come
// from `rng`. The model's attention is restored afterwards.
LeakProbeResult leak_probe(LanguageModel& model, const std::vector<Config>& attention,
                           const TokenStream& heldout, std::int64_t seq, int samples, Rng& rng);

}  // namespace lighthouse::train
