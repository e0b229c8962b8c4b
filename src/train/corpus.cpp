// The built-in long-range corpus (see data.hpp).
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lighthouse/error.hpp"
#include "train/data.hpp"
#include "train/model.hpp"

namespace lighthouse::train {

namespace {

constexpr std::array<const char*, 8> kAdjectives = {"red",  "small", "old",   "quiet",
                                                    "busy", "green", "brave", "tired"};
constexpr std::array<const char*, 8> kNouns = {"fox",  "dog",   "bird", "ship",
                                               "tree", "river", "king", "lamp"};
constexpr std::array<const char*, 8> kVerbs = {"sees",  "finds", "helps",  "follows",
                                               "likes", "hears", "guards", "paints"};

template <std::size_t N>
const char* pick(Rng& rng, const std::array<const char*, N>& words) {
  return words[rng.below(N)];
}

std::string random_value(Rng& rng) {
  return std::to_string(1000 + rng.below(9000));
}

// Locally predictable filler: a counting run or a sentence of the tiny grammar.
std::string filler_line(Rng& rng) {
  if (rng.below(3) == 0) {
    const std::uint64_t start = rng.below(900);
    std::string line;
    for (std::uint64_t i = 0; i < 6; ++i) line += std::to_string(start + i) + (i < 5 ? " " : ".\n");
    return line;
  }
  return grammar_sentence(rng);
}

std::string recall_document(Rng& rng, std::int64_t bytes) {
  std::vector<std::pair<std::string, std::string>> table;
  // Digits appear only in values: a digit is then a clean cue for copying the next one.
  std::string doc = "record\n";
  while (doc.size() < static_cast<std::size_t>(bytes)) {
    const std::uint64_t r = rng.below(16);
    if (r == 0 || table.empty()) {
      table.emplace_back(random_key(rng, CorpusKind::kRecall), random_value(rng));
      doc += "set " + table.back().first + table.back().second + ".\n";
    } else if (r <= 10) {
      // Half the queries ask one of the last four facts (short distances, where a model first
      // learns to copy), half any earlier fact of the document (every distance).
      const std::size_t n = table.size();
      const std::size_t recent = std::min<std::size_t>(n, 4);
      const std::size_t i = rng.below(2) == 0 ? n - 1 - rng.below(recent) : rng.below(n);
      doc += "ask " + table[i].first + table[i].second + ".\n";
    } else {
      doc += grammar_sentence(rng);  // no counting runs: they would put digits outside the values
    }
  }
  return doc;
}

// A recall document with kFarFacts more facts, each written once on a line of its own at a depth
// drawn uniformly from the document's first 90%, and asked only on the document's last lines:
// passkeys in the corpus's own text. The other facts are asked again and again, so their keys
// were mostly written a few lines back; these were not.
constexpr int kFarFacts = 8;

std::string far_query_document(Rng& rng, std::int64_t bytes) {
  std::string doc = recall_document(rng, bytes);
  std::vector<std::string> lines;  // "KEYvalue" of each far fact
  for (int f = 0; f < kFarFacts; ++f) {
    const std::string key = unused_key(rng, CorpusKind::kRecall, doc);  // drawn before the value
    lines.push_back(key + random_value(rng));
    const double depth = 0.9 * rng.uniform() * static_cast<double>(doc.size());
    // The next line start ("record\n" ends the first line).
    const std::size_t at = doc.find('\n', static_cast<std::size_t>(depth)) + 1;
    doc.insert(at, "set " + lines.back() + ".\n");
  }
  for (int f = kFarFacts - 1; f > 0; --f) {
    std::swap(lines[static_cast<std::size_t>(f)],
              lines[rng.below(static_cast<std::uint64_t>(f) + 1)]);
  }
  for (const std::string& line : lines) doc += "ask " + line + ".\n";
  return doc;
}

}  // namespace

std::string grammar_sentence(Rng& rng) {
  return std::string("the ") + pick(rng, kAdjectives) + " " + pick(rng, kNouns) + " " +
         pick(rng, kVerbs) + " the " + pick(rng, kAdjectives) + " " + pick(rng, kNouns) + ".\n";
}

std::string random_key(Rng& rng, CorpusKind kind) {
  const char first = kind == CorpusKind::kRecall ? 'A' : 'a';
  std::string key(3, first);
  for (char& c : key) c = static_cast<char>(first + rng.below(26));
  return key;
}

std::string unused_key(Rng& rng, CorpusKind kind, const std::string& text) {
  std::string key = random_key(rng, kind);
  while (text.find(key) != std::string::npos) key = random_key(rng, kind);
  return key;
}

CorpusKind parse_corpus_kind(const std::string& name) {
  if (name == "facts") return CorpusKind::kFacts;
  if (name == "recall") return CorpusKind::kRecall;
  throw InvalidArgument("--corpus", name, "must be facts or recall");
}

const char* corpus_kind_name(CorpusKind kind) {
  return kind == CorpusKind::kRecall ? "recall" : "facts";
}

std::string generate_document(Rng& rng, std::int64_t bytes, CorpusKind kind) {
  bytes = std::max<std::int64_t>(bytes, 256);
  if (kind == CorpusKind::kRecall) return recall_document(rng, bytes);
  // About one fact per 400 bytes, defined at the top.
  const std::int64_t facts = std::max<std::int64_t>(2, bytes / 400);
  std::vector<std::pair<std::string, std::string>> table;
  std::string doc = "record " + std::to_string(rng.below(100000)) + "\n";
  for (std::int64_t i = 0; i < facts; ++i) {
    table.emplace_back(random_key(rng, CorpusKind::kFacts), random_value(rng));
    doc += "set " + table.back().first + " = " + table.back().second + ".\n";
  }
  // Filler first, so queries sit far from the definitions; then filler with queries mixed in.
  const auto half = static_cast<std::size_t>(bytes / 2);
  while (doc.size() < half) doc += filler_line(rng);
  while (doc.size() < static_cast<std::size_t>(bytes)) {
    if (rng.below(3) == 0) {
      const auto& [key, value] = table[rng.below(table.size())];
      doc += "ask " + key + ": " + value + ".\n";
    } else {
      doc += filler_line(rng);
    }
  }
  return doc;
}

TokenStream generate_corpus(std::int64_t tokens, std::uint64_t seed, std::int64_t doc_bytes,
                            CorpusKind kind, std::int64_t doc_bytes_min, double far_queries) {
  if (tokens < 1) throw InvalidArgument("tokens", std::to_string(tokens), "must be >= 1");
  if (doc_bytes_min < 0 || doc_bytes_min > doc_bytes) {
    throw InvalidArgument("--doc-bytes-min", std::to_string(doc_bytes_min),
                          "must be between 0 and --doc-bytes (" + std::to_string(doc_bytes) + ")");
  }
  if (!(far_queries >= 0 && far_queries <= 1)) {
    throw InvalidArgument("--far-queries", std::to_string(far_queries), "must be between 0 and 1");
  }
  if (far_queries > 0 && kind != CorpusKind::kRecall) {
    throw InvalidArgument("--far-queries", std::to_string(far_queries),
                          "needs --corpus recall (the facts corpus asks every fact far away)");
  }
  Rng rng(seed);
  TokenStream out;
  out.reserve(static_cast<std::size_t>(tokens + doc_bytes + 1024));
  while (static_cast<std::int64_t>(out.size()) < tokens) {
    std::int64_t bytes = doc_bytes;
    if (doc_bytes_min > 0) {  // log-uniform in [doc_bytes_min, doc_bytes]
      const double lo = std::log(static_cast<double>(doc_bytes_min));
      const double hi = std::log(static_cast<double>(doc_bytes));
      bytes = static_cast<std::int64_t>(std::exp(lo + (hi - lo) * rng.uniform()));
    }
    // Drawn only when asked for, so that far_queries = 0 leaves the stream as it was.
    const bool far = far_queries > 0 && rng.uniform() < far_queries;
    for (unsigned char c :
         far ? far_query_document(rng, bytes) : generate_document(rng, bytes, kind)) {
      out.push_back(c);
    }
    out.push_back(kSeparator);
  }
  return out;
}

int recall_distance_class(std::int64_t distance) {
  int c = 0;
  for (std::int64_t bound : kRecallDistanceBounds) c += distance >= bound ? 1 : 0;
  return c;
}

std::vector<std::int64_t> recall_positions(const std::int32_t* inputs, const std::int32_t* targets,
                                           std::int64_t seq,
                                           std::vector<std::int64_t>* first_digits,
                                           std::vector<std::int64_t>* first_distances) {
  std::vector<std::int64_t> out;
  if (seq < 1) return out;
  // The sequence's seq + 1 tokens: the inputs and the last target.
  auto token = [&](std::int64_t i) { return i < seq ? inputs[i] : targets[seq - 1]; };
  auto matches = [&](std::int64_t at, const char* text) {
    for (std::int64_t j = 0; text[j] != '\0'; ++j) {
      if (at + j > seq || token(at + j) != static_cast<unsigned char>(text[j])) return false;
    }
    return true;
  };
  auto is_lower = [&](std::int64_t i) { return i <= seq && token(i) >= 'a' && token(i) <= 'z'; };
  auto is_upper = [&](std::int64_t i) { return i <= seq && token(i) >= 'A' && token(i) <= 'Z'; };
  auto is_digit = [&](std::int64_t i) { return i <= seq && token(i) >= '0' && token(i) <= '9'; };
  auto key_at = [&](std::int64_t i) {
    return std::string{static_cast<char>(token(i)), static_cast<char>(token(i + 1)),
                       static_cast<char>(token(i + 2))};
  };
  std::set<std::string> facts;  // keys set so far in the current document
  // Where each key was last written (its "set" or "ask" line's start) in the current document.
  std::map<std::string, std::int64_t> last_seen;
  auto record_first = [&](std::int64_t at, std::int64_t line, const std::string& key) {
    if (first_digits) first_digits->push_back(at);
    if (first_digits && first_distances) first_distances->push_back(line - last_seen.at(key));
  };
  for (std::int64_t i = 0; i + 4 < seq; ++i) {
    if (token(i) == kSeparator) {
      facts.clear();
      last_seen.clear();
      continue;
    }
    const bool line_start = i == 0 || token(i - 1) == '\n' || token(i - 1) == kSeparator;
    if (!line_start) continue;
    if (is_upper(i + 4) && is_upper(i + 5) && is_upper(i + 6) && is_digit(i + 7)) {
      // The recall kind: "set KQV5832." / "ask KQV5832."; the answer digits are tokens
      // i + 7 .. i + 10, the targets of inputs i + 6 .. i + 9.
      const std::string key = key_at(i + 4);
      if (matches(i, "set ")) {
        facts.insert(key);
        last_seen[key] = i;
      } else if (matches(i, "ask ") && facts.count(key) > 0) {
        for (std::int64_t d = 7; d < 11 && i + d <= seq && is_digit(i + d); ++d) {
          out.push_back(i + d - 1);
          if (d == 7) record_first(i + d - 1, i, key);
        }
        last_seen[key] = i;
      }
      continue;
    }
    if (!is_lower(i + 4) || !is_lower(i + 5) || !is_lower(i + 6)) continue;
    const std::string key = key_at(i + 4);
    if (matches(i, "set ") && matches(i + 7, " = ")) {
      facts.insert(key);
      last_seen[key] = i;
    } else if (matches(i, "ask ") && matches(i + 7, ": ") && facts.count(key) > 0) {
      // "ask kqv: " is 9 tokens; the answer digits are tokens i + 9 .. i + 12, the targets of
      // inputs i + 8 .. i + 11.
      for (std::int64_t d = 9; d < 13 && i + d <= seq && is_digit(i + d); ++d) {
        out.push_back(i + d - 1);
        if (d == 9) record_first(i + d - 1, i, key);
      }
      last_seen[key] = i;
    }
  }
  return out;
}

}  // namespace lighthouse::train
