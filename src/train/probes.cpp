#include "train/probes.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "lighthouse/error.hpp"

namespace lighthouse::train {

namespace {

// Restores the model's per-layer attention when the evaluation ends, even by an exception.
class AttentionGuard {
 public:
  AttentionGuard(LanguageModel& model, std::vector<Config> during)
      : model_(model), saved_(model.attention()) {
    model_.set_attention(std::move(during));
  }
  ~AttentionGuard() { model_.set_attention(saved_); }
  AttentionGuard(const AttentionGuard&) = delete;
  AttentionGuard& operator=(const AttentionGuard&) = delete;

 private:
  LanguageModel& model_;
  std::vector<Config> saved_;
};

void append(std::vector<std::int32_t>& out, const std::string& text) {
  for (unsigned char c : text) out.push_back(c);
}

}  // namespace

Rng passkey_rng(std::uint64_t seed) {
  return Rng(seed ^ 0x706173736b6579ull);
}

std::vector<std::int32_t> passkey_sequence(Rng& rng, std::int64_t length, double depth, int* digit,
                                           CorpusKind kind) {
  if (length < 64) throw InvalidArgument("passkey length", std::to_string(length), "must be >= 64");
  const bool recall = kind == CorpusKind::kRecall;
  // recall: the filler is one document of the corpus itself (its facts, their queries, grammar
  // sentences), so the probe differs from training text only in the needle's distance; the
  // needle's key is one the document does not use.
  const std::string document = recall ? generate_document(rng, length, kind) : std::string();
  const std::string key = unused_key(rng, kind, document);
  // The corpora's values are 1000..9999: a first digit of 0 never occurs in training, so the
  // needle's is 1..9 too (chance is 1 in 9).
  *digit = 1 + static_cast<int>(rng.below(9));
  // recall: the needle is a line of its own, as the corpus's facts are.
  std::string needle =
      (recall ? "\nset " : "set ") + key + (recall ? "" : " = ") + std::to_string(*digit);
  for (int i = 0; i < 3; ++i) needle += static_cast<char>('0' + rng.below(10));
  needle += ".\n";
  const std::string query = "\nask " + key + (recall ? "" : ": ");
  const auto filler = length - static_cast<std::int64_t>(needle.size() + query.size());
  const auto at = static_cast<std::int64_t>(std::floor(std::clamp(depth, 0.0, 1.0) * filler));
  // facts: no digits or upper-case letters to mislead, random letters, spaces and newlines.
  // recall: the document's bytes in order, cut at the needle and the query.
  std::size_t next = 0;
  auto fill = [&](std::vector<std::int32_t>& out, std::int64_t n) {
    if (recall) {
      const auto from = document.begin() + static_cast<std::ptrdiff_t>(next);
      out.insert(out.end(), from, from + n);
      next += static_cast<std::size_t>(n);
      return;
    }
    for (std::int64_t i = 0; i < n; ++i) {
      const std::uint64_t r = rng.below(32);
      out.push_back(r < 26 ? 'a' + static_cast<int>(r) : r < 31 ? ' ' : '\n');
    }
  };
  std::vector<std::int32_t> seq;
  seq.reserve(static_cast<std::size_t>(length));
  fill(seq, at);
  append(seq, needle);
  fill(seq, filler - at);
  append(seq, query);
  return seq;
}

PasskeyReport passkey_eval(LanguageModel& model, const std::vector<std::int64_t>& lengths,
                           const std::vector<double>& depths, int trials, std::uint64_t seed,
                           CorpusKind kind) {
  AttentionGuard guard(model, all_dense(model.config().layers));
  Rng rng = passkey_rng(seed);
  PasskeyReport report;
  const int vocab = model.config().vocab;
  std::vector<float> z(static_cast<std::size_t>(vocab));
  for (std::int64_t n : lengths) {
    // Only the last position counts: its target is the digit, its loss -log p(digit) over all
    // bytes (the probe's counterpart of the evaluations' first-digit loss).
    std::vector<std::int32_t> targets(static_cast<std::size_t>(n), -1);
    std::vector<double> losses(static_cast<std::size_t>(n));
    for (double depth : depths) {
      PasskeyCell cell{n, depth, 0, trials};
      for (int t = 0; t < trials; ++t) {
        int digit = 0;
        const std::vector<std::int32_t> seq = passkey_sequence(rng, n, depth, &digit, kind);
        targets.back() = '0' + digit;
        model.evaluate(seq.data(), targets.data(), 1, n, losses.data());
        cell.loss_sum += losses.back();
        model.logits_rows({n - 1}, z.data());
        int best = 0;
        for (int d = 1; d < 10; ++d) {
          if (z['0' + d] > z['0' + best]) best = d;
        }
        cell.correct += best == digit;
      }
      report.correct += cell.correct;
      report.trials += cell.trials;
      report.loss_sum += cell.loss_sum;
      report.cells.push_back(cell);
    }
  }
  return report;
}

LeakProbeResult leak_probe(LanguageModel& model, const std::vector<Config>& attention,
                           const TokenStream& heldout, std::int64_t seq, int samples, Rng& rng) {
  if (samples < 2) throw InvalidArgument("leak samples", std::to_string(samples), "must be >= 2");
  if (seq < 2) throw InvalidArgument("seq", std::to_string(seq), "must be >= 2");
  AttentionGuard guard(model, attention);
  constexpr int kPerSequence = 8;
  Packer packer(&heldout, seq);
  const auto n = static_cast<std::size_t>(seq);
  std::vector<std::int32_t> inputs(n), targets(n), corrupt(n), only_t(n, -1);
  std::vector<double> real(n), corrupted(n);
  LeakProbeResult out;
  while (static_cast<int>(out.samples.size()) < samples) {
    packer.next(1, inputs.data(), targets.data());
    model.evaluate(inputs.data(), targets.data(), 1, seq, real.data());
    for (int k = 0; k < kPerSequence && static_cast<int>(out.samples.size()) < samples; ++k) {
      LeakProbeResult::Sample s;
      s.position = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(seq - 1)));
      const auto t = static_cast<std::size_t>(s.position);
      std::copy(inputs.begin(), inputs.end(), corrupt.begin());
      for (std::size_t i = t + 1; i < n; ++i)
        corrupt[i] = static_cast<std::int32_t>(rng.below(256));
      // Only position t's loss is needed from the corrupted pass.
      only_t[t] = targets[t];
      model.evaluate(corrupt.data(), only_t.data(), 1, seq, corrupted.data());
      only_t[t] = -1;
      s.real = real[t];
      s.corrupt = corrupted[t];
      out.samples.push_back(s);
    }
  }
  const double count = static_cast<double>(out.samples.size());
  for (const auto& s : out.samples) {
    out.mean_real += s.real / count;
    out.mean_corrupt += s.corrupt / count;
    out.mean_diff += (s.corrupt - s.real) / count;
  }
  double ss = 0;
  for (const auto& s : out.samples) ss += std::pow(s.corrupt - s.real - out.mean_diff, 2);
  out.ci95 = 1.96 * std::sqrt(ss / (count - 1)) / std::sqrt(count);
  return out;
}

}  // namespace lighthouse::train
