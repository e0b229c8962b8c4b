// Count-based reference losses for the trained model (see data.hpp).
#include <cmath>
#include <string>
#include <vector>

#include "lighthouse/error.hpp"
#include "train/data.hpp"
#include "train/model.hpp"

namespace lighthouse::train {

double ngram_cross_entropy(const TokenStream& train, const TokenStream& heldout, int context) {
  if (context != 0 && context != 1) {
    throw InvalidArgument("context", std::to_string(context), "must be 0 (unigram) or 1 (bigram)");
  }
  if (heldout.size() < 2) {
    throw InvalidArgument("heldout", std::to_string(heldout.size()) + " tokens", "must be >= 2");
  }
  constexpr std::size_t V = kByteVocab;
  const std::size_t rows = context == 0 ? 1 : V;
  // counts[row * V + next], row = the previous token (bigram) or 0 (unigram); add-one smoothing.
  std::vector<double> counts(rows * V, 1.0), totals(rows, static_cast<double>(V));
  auto row_of = [&](std::int32_t prev) {
    return context == 0 ? 0 : static_cast<std::size_t>(prev);
  };
  for (std::size_t i = 1; i < train.size(); ++i) {
    const std::size_t r = row_of(train[i - 1]);
    counts[r * V + static_cast<std::size_t>(train[i])] += 1.0;
    totals[r] += 1.0;
  }
  // The same targets as the model's: every held-out token after the first.
  double total = 0;
  for (std::size_t i = 1; i < heldout.size(); ++i) {
    const std::size_t r = row_of(heldout[i - 1]);
    total -= std::log(counts[r * V + static_cast<std::size_t>(heldout[i])] / totals[r]);
  }
  return total / static_cast<double>(heldout.size() - 1);
}

}  // namespace lighthouse::train
