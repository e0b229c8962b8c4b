// The built-in long-range corpus (see data.hpp).
#include <array>
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

std::string random_key(Rng& rng) {
  std::string key(3, 'a');
  for (char& c : key) c = static_cast<char>('a' + rng.below(26));
  return key;
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
  return std::string("the ") + pick(rng, kAdjectives) + " " + pick(rng, kNouns) + " " +
         pick(rng, kVerbs) + " the " + pick(rng, kAdjectives) + " " + pick(rng, kNouns) + ".\n";
}

}  // namespace

std::string generate_document(Rng& rng, std::int64_t bytes) {
  bytes = std::max<std::int64_t>(bytes, 256);
  // About one fact per 400 bytes, defined at the top.
  const std::int64_t facts = std::max<std::int64_t>(2, bytes / 400);
  std::vector<std::pair<std::string, std::string>> table;
  std::string doc = "record " + std::to_string(rng.below(100000)) + "\n";
  for (std::int64_t i = 0; i < facts; ++i) {
    table.emplace_back(random_key(rng), random_value(rng));
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

TokenStream generate_corpus(std::int64_t tokens, std::uint64_t seed, std::int64_t doc_bytes) {
  if (tokens < 1) throw InvalidArgument("tokens", std::to_string(tokens), "must be >= 1");
  Rng rng(seed);
  TokenStream out;
  out.reserve(static_cast<std::size_t>(tokens + doc_bytes + 1024));
  while (static_cast<std::int64_t>(out.size()) < tokens) {
    for (unsigned char c : generate_document(rng, doc_bytes)) out.push_back(c);
    out.push_back(kSeparator);
  }
  return out;
}

}  // namespace lighthouse::train
