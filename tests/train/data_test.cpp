// The generated corpus, text files as bytes, the held-out split and the packer.
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>

#include "lighthouse/error.hpp"
#include "train/data.hpp"
#include "train/model.hpp"

namespace {

using lighthouse::train::CorpusKind;
using lighthouse::train::generate_corpus;
using lighthouse::train::generate_document;
using lighthouse::train::kSeparator;
using lighthouse::train::Packer;
using lighthouse::train::parse_corpus_kind;
using lighthouse::train::Rng;
using lighthouse::train::TokenStream;

TEST(TrainData, GeneratedCorpusIsSeededAndAnswersItsQueries) {
  const TokenStream a = lighthouse::train::generate_corpus(20000, 3, 4000);
  EXPECT_EQ(a, lighthouse::train::generate_corpus(20000, 3, 4000));
  EXPECT_NE(a, lighthouse::train::generate_corpus(20000, 4, 4000));
  EXPECT_GE(a.size(), 20000u);
  EXPECT_EQ(a.back(), kSeparator);
  // Every query in a document repeats the value its key was set to, far back.
  std::string doc;
  int queries = 0, far = 0;
  for (std::int32_t t : a) {
    if (t != kSeparator) {
      ASSERT_GE(t, 0);
      ASSERT_LT(t, 256);
      doc.push_back(static_cast<char>(t));
      continue;
    }
    std::map<std::string, std::pair<std::string, std::size_t>> facts;
    const std::regex set_re("set ([a-z]{3}) = ([0-9]{4})\\.\n"),
        ask_re("ask ([a-z]{3}): ([0-9]{4})\\.\n");
    for (auto it = std::sregex_iterator(doc.begin(), doc.end(), set_re);
         it != std::sregex_iterator(); ++it) {
      facts[(*it)[1]] = {(*it)[2], static_cast<std::size_t>(it->position())};
    }
    for (auto it = std::sregex_iterator(doc.begin(), doc.end(), ask_re);
         it != std::sregex_iterator(); ++it) {
      ASSERT_TRUE(facts.count((*it)[1]));
      EXPECT_EQ(facts[(*it)[1]].first, (*it)[2]);
      ++queries;
      far += static_cast<std::size_t>(it->position()) - facts[(*it)[1]].second > 1000;
    }
    EXPECT_GE(facts.size(), 2u);
    doc.clear();
  }
  EXPECT_GT(queries, 10);
  EXPECT_EQ(far, queries);  // queries sit in the second half of a 4000-byte document
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("lighthouse_train_data_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& bytes) {
    const auto path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  std::filesystem::path dir_;
};

TEST_F(TempDir, TextFilesAreReadAsExactlyTheirBytes) {
  const std::string binary("a\0\xff\n", 4);
  const auto f1 = write("one.txt", binary), f2 = write("empty.txt", ""), f3 = write("two", "xy");
  const TokenStream t = lighthouse::train::read_text_files({f1, f2, f3});
  EXPECT_EQ(t, (TokenStream{'a', 0, 255, '\n', kSeparator, kSeparator, 'x', 'y', kSeparator}));
  EXPECT_THROW(lighthouse::train::read_text_files({f2}), lighthouse::InvalidArgument);
  try {
    lighthouse::train::read_text_files({f1, (dir_ / "missing").string()});
    FAIL();
  } catch (const lighthouse::Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos);
  }
}

TEST_F(TempDir, AFileShorterThanOneSequenceIsRepeatedNeverOverrun) {
  const TokenStream t = lighthouse::train::read_text_files({write("short", "abc")});
  ASSERT_EQ(t.size(), 4u);
  Packer p(&t, 10);
  std::vector<std::int32_t> in(20), tg(20);
  p.next(2, in.data(), tg.data());
  const std::vector<std::int32_t> cycle = {'a', 'b', 'c', kSeparator};
  for (std::size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(in[i], cycle[(i % 10 + (i / 10) * 10) % 4]);
    EXPECT_EQ(tg[i], cycle[(i % 10 + (i / 10) * 10 + 1) % 4]);
  }
  EXPECT_EQ(p.position(), 20u % 4u);
}

TEST(TrainData, PackerCutsConsecutiveShiftedSequences) {
  TokenStream t(100);
  for (int i = 0; i < 100; ++i) t[i] = i;
  Packer p(&t, 8, 95);
  std::vector<std::int32_t> in(16), tg(16);
  p.next(2, in.data(), tg.data());
  EXPECT_EQ(in[0], 95);
  EXPECT_EQ(in[4], 99);
  EXPECT_EQ(tg[4], 0);  // wraps, never reads t[100]
  EXPECT_EQ(in[8], 3);  // next sequence starts seq later
  EXPECT_EQ(tg[15], 11);
  EXPECT_EQ(p.position(), 11u);
  const TokenStream one = {5};
  EXPECT_THROW(Packer(&one, 8), lighthouse::InvalidArgument);
}

// Cuts `text` (with '|' as the document separator) into one packed input/target pair.
void pack(const std::string& text, std::vector<std::int32_t>* in, std::vector<std::int32_t>* tg) {
  in->clear();
  tg->clear();
  for (std::size_t i = 0; i + 1 < text.size(); ++i) {
    auto tok = [](char c) { return c == '|' ? kSeparator : static_cast<unsigned char>(c); };
    in->push_back(tok(text[i]));
    tg->push_back(tok(text[i + 1]));
  }
}

// The answers the two recall-position texts below expect: the four digits before `marker` (the
// one query whose fact is in the same document) and the last two of the sequence (a query cut
// after two digits). Answer digits are targets: position i predicts character i + 1.
std::vector<std::int64_t> expected_answers(const std::string& text, const std::string& marker) {
  const auto first = static_cast<std::int64_t>(text.find(marker));
  const auto seq = static_cast<std::int64_t>(text.size()) - 1;
  return {first - 1, first, first + 1, first + 2, seq - 2, seq - 1};
}

TEST(TrainData, RecallPositionsAreTheAnswersWhoseFactIsInTheSequence) {
  // "ask abc" has its fact in the sequence; "ask xyz" was set in the previous document; "ask
  // qqq" never; the last "ask abc" is cut after two digits.
  const std::string text =
      "set xyz = 1111.\n|set abc = 4821.\nthe dog.\nask abc: 4821.\nask xyz: 1111.\n"
      "ask qqq: 5555.\nask abc: 48";
  std::vector<std::int32_t> in, tg;
  pack(text, &in, &tg);
  const auto seq = static_cast<std::int64_t>(in.size());
  ASSERT_EQ(text.find("4821.\nask xyz"), 51u);
  std::vector<std::int64_t> first, distances;
  const auto got =
      lighthouse::train::recall_positions(in.data(), tg.data(), seq, &first, &distances);
  EXPECT_EQ(got, expected_answers(text, "4821.\nask xyz"));
  // The first digit of each answer: the whole one's and the cut one's.
  EXPECT_EQ(first, (std::vector<std::int64_t>{got[0], got[4]}));
  // Each query's distance back to the key's last line: the fact, then the earlier query.
  const auto set = static_cast<std::int64_t>(text.find("set abc"));
  const auto ask = static_cast<std::int64_t>(text.find("ask abc"));
  const auto again = static_cast<std::int64_t>(text.rfind("ask abc"));
  EXPECT_EQ(distances, (std::vector<std::int64_t>{ask - set, again - ask}));
  for (std::int64_t i : got) {
    EXPECT_GE(tg[static_cast<std::size_t>(i)], '0');
    EXPECT_LE(tg[static_cast<std::size_t>(i)], '9');
  }
  // On the generated corpus most answers of a document-long sequence are found.
  const TokenStream corpus = lighthouse::train::generate_corpus(8000, 5, 2000);
  EXPECT_GT(lighthouse::train::recall_positions(corpus.data(), corpus.data() + 1, 4000).size(),
            40u);
}

TEST(TrainData, RecallCorpusAsksEveryFactInTheUpperCaseFormat) {
  // "set KQV5832." ... "ask KQV5832.": the key is upper case (no other byte of the corpus is),
  // the value follows it directly, and the query repeats the fact's line after "ask ".
  Rng rng(7);
  const std::string doc = generate_document(rng, 20000, CorpusKind::kRecall);
  ASSERT_GE(doc.size(), 20000u);
  std::map<std::string, std::string> facts;
  std::size_t queries = 0, lines = 0, upper = 0;
  for (std::size_t at = 0; at < doc.size();) {
    const std::size_t end = doc.find('\n', at);
    ASSERT_NE(end, std::string::npos);
    const std::string line = doc.substr(at, end - at);
    at = end + 1;
    ++lines;
    upper += static_cast<std::size_t>(
        std::count_if(line.begin(), line.end(), [](char c) { return c >= 'A' && c <= 'Z'; }));
    if (line.rfind("set ", 0) == 0 || line.rfind("ask ", 0) == 0) {
      ASSERT_EQ(line.size(), 12u) << line;
      const std::string key = line.substr(4, 3), value = line.substr(7, 4);
      for (char c : key) ASSERT_TRUE(c >= 'A' && c <= 'Z') << line;
      for (char c : value) ASSERT_TRUE(c >= '0' && c <= '9') << line;
      ASSERT_EQ(line[11], '.');
      if (line[0] == 's') {
        facts[key] = value;
      } else {
        ++queries;
        ASSERT_EQ(facts.count(key), 1u) << "asked before it was set: " << line;
        EXPECT_EQ(facts[key], value) << line;
      }
    } else {
      EXPECT_EQ(
          std::count_if(line.begin(), line.end(), [](char c) { return c >= 'A' && c <= 'Z'; }), 0)
          << line;
    }
  }
  // About 1 line in 16 sets a fact and 10 in 16 ask one.
  EXPECT_GT(facts.size(), lines / 32);
  EXPECT_LT(facts.size(), lines / 8);
  EXPECT_GT(queries, lines / 2);
  EXPECT_EQ(upper, 3 * (facts.size() + queries));
  // Digits appear only in the values.
  EXPECT_EQ(std::count_if(doc.begin(), doc.end(), [](char c) { return c >= '0' && c <= '9'; }),
            static_cast<std::ptrdiff_t>(4 * (facts.size() + queries)));
  EXPECT_EQ(parse_corpus_kind("recall"), CorpusKind::kRecall);
  EXPECT_EQ(parse_corpus_kind("facts"), CorpusKind::kFacts);
  EXPECT_THROW(parse_corpus_kind("news"), lighthouse::InvalidArgument);
}

TEST(TrainData, DocumentLengthsSpanTheRangeWithDocBytesMin) {
  const TokenStream corpus = generate_corpus(400000, 3, 16000, CorpusKind::kRecall, 500);
  std::vector<std::int64_t> lengths;
  std::int64_t start = 0;
  for (std::size_t i = 0; i < corpus.size(); ++i) {
    if (corpus[i] == kSeparator) {
      lengths.push_back(static_cast<std::int64_t>(i) - start);
      start = static_cast<std::int64_t>(i) + 1;
    }
  }
  ASSERT_GT(lengths.size(), 50u);
  // A document ends with the line that reaches its drawn length (at most ~40 bytes more).
  EXPECT_GE(*std::min_element(lengths.begin(), lengths.end()), 500);
  EXPECT_LT(*std::max_element(lengths.begin(), lengths.end()), 16000 + 64);
  EXPECT_LT(*std::min_element(lengths.begin(), lengths.end()), 1000);
  EXPECT_GT(*std::max_element(lengths.begin(), lengths.end()), 8000);
  EXPECT_THROW(generate_corpus(1000, 3, 1000, CorpusKind::kRecall, 2000),
               lighthouse::InvalidArgument);
}

TEST(TrainData, RecallPositionsReadTheRecallFormat) {
  // "ask ABC" has its fact in the sequence; "ask XYZ" was set in the previous document; "ask
  // QQQ" never; lower-case look-alikes are not the recall format's lines.
  const std::string text =
      "set XYZ1111.\n|set ABC4821.\nthe dog.\nask ABC4821.\nask XYZ1111.\nask QQQ5555.\n"
      "ask abc4821.\nask ABC48";
  std::vector<std::int32_t> in, tg;
  pack(text, &in, &tg);
  const auto seq = static_cast<std::int64_t>(in.size());
  std::vector<std::int64_t> first, distances;
  const auto got =
      lighthouse::train::recall_positions(in.data(), tg.data(), seq, &first, &distances);
  EXPECT_EQ(got, expected_answers(text, "4821.\nask XYZ"));
  EXPECT_EQ(first, (std::vector<std::int64_t>{got[0], got[4]}));
  // The lower-case look-alike is not a mention of ABC: the last query reaches back to the first.
  const auto set = static_cast<std::int64_t>(text.find("set ABC"));
  const auto ask = static_cast<std::int64_t>(text.find("ask ABC"));
  const auto again = static_cast<std::int64_t>(text.rfind("ask ABC"));
  EXPECT_EQ(distances, (std::vector<std::int64_t>{ask - set, again - ask}));
  const TokenStream corpus = generate_corpus(8000, 5, 2000, CorpusKind::kRecall);
  // Most of the ~10 in 16 query lines of a sequence find their fact in it.
  EXPECT_GT(lighthouse::train::recall_positions(corpus.data(), corpus.data() + 1, 4000).size(),
            4u * 4000 / 20 / 2);
}

TEST(TrainData, FarQueryDocumentsAskFactsWrittenOnceAtTheirEnd) {
  // 0 leaves the stream as it was; other kinds or shares are refused, naming the flag.
  EXPECT_EQ(generate_corpus(20000, 4, 2000, CorpusKind::kRecall, 0, 0.0),
            generate_corpus(20000, 4, 2000, CorpusKind::kRecall));
  EXPECT_THROW(generate_corpus(1000, 4, 500, CorpusKind::kFacts, 0, 0.5),
               lighthouse::InvalidArgument);
  EXPECT_THROW(generate_corpus(1000, 4, 500, CorpusKind::kRecall, 0, 1.5),
               lighthouse::InvalidArgument);
  // Every document (share 1): its last 8 lines ask keys that only one earlier line wrote.
  const TokenStream corpus = generate_corpus(60000, 4, 4000, CorpusKind::kRecall, 0, 1.0);
  std::vector<std::string> docs(1);
  for (std::int32_t t : corpus) {
    if (t == kSeparator) {
      docs.emplace_back();
    } else {
      docs.back() += static_cast<char>(t);
    }
  }
  docs.pop_back();  // after the last separator
  ASSERT_GE(docs.size(), 10u);
  std::vector<std::int64_t> distances;
  for (const std::string& doc : docs) {
    std::size_t end = doc.size() - 1;  // the last '\n'
    for (int q = 0; q < 8; ++q) {
      const std::size_t start = doc.rfind('\n', end - 1) + 1;
      const std::string line = doc.substr(start, end - start);  // "ask KEY1234."
      ASSERT_EQ(line.substr(0, 4), "ask ") << line;
      const std::string key = line.substr(4, 3);
      const std::size_t set = doc.find("\nset " + line.substr(4));  // the fact, on its own line
      ASSERT_NE(set, std::string::npos) << line;
      EXPECT_LT(set, doc.size() - 8 * 13);  // before the final queries
      std::size_t mentions = 0;
      for (auto p = doc.find(key); p != std::string::npos; p = doc.find(key, p + 1)) ++mentions;
      EXPECT_EQ(mentions, 2u) << key;
      distances.push_back(static_cast<std::int64_t>(start - set));
      end = start - 1;
    }
  }
  // Depths spread over the document: some answers reach back more than 2K tokens, some less.
  EXPECT_GT(*std::max_element(distances.begin(), distances.end()), 2048);
  EXPECT_LT(*std::min_element(distances.begin(), distances.end()), 1024);
}

TEST(TrainData, RecallDistanceClassesSplitAt128And1KAnd8K) {
  using lighthouse::train::recall_distance_class;
  EXPECT_EQ(recall_distance_class(13), 0);
  EXPECT_EQ(recall_distance_class(127), 0);
  EXPECT_EQ(recall_distance_class(128), 1);
  EXPECT_EQ(recall_distance_class(1023), 1);
  EXPECT_EQ(recall_distance_class(1024), 2);
  EXPECT_EQ(recall_distance_class(8191), 2);
  EXPECT_EQ(recall_distance_class(8192), 3);
  EXPECT_EQ(recall_distance_class(1 << 20), 3);
}

TEST(TrainData, CountModelBaselines) {
  // Alternating bytes: a unigram model is ln 2 away (plus smoothing), a bigram model nearly 0.
  TokenStream ab(40000);
  for (std::size_t i = 0; i < ab.size(); ++i) ab[i] = i % 2 == 0 ? 'a' : 'b';
  const double unigram = lighthouse::train::ngram_cross_entropy(ab, ab, 0);
  const double bigram = lighthouse::train::ngram_cross_entropy(ab, ab, 1);
  EXPECT_NEAR(unigram, std::log(2.0), 0.1);
  EXPECT_GT(unigram, std::log(2.0));
  EXPECT_LT(bigram, 0.1);
  EXPECT_THROW(lighthouse::train::ngram_cross_entropy(ab, ab, 2), lighthouse::InvalidArgument);
  EXPECT_THROW(lighthouse::train::ngram_cross_entropy(ab, TokenStream{1}, 0),
               lighthouse::InvalidArgument);
}

TEST(TrainData, HeldOutSplit) {
  TokenStream all(100), train, held;
  for (int i = 0; i < 100; ++i) all[i] = i;
  lighthouse::train::split_heldout(all, 0.1, &train, &held);
  EXPECT_EQ(train.size(), 90u);
  EXPECT_EQ(held.front(), 90);
  const TokenStream tiny = {1, 2, 3};
  EXPECT_THROW(lighthouse::train::split_heldout(tiny, 0.5, &train, &held),
               lighthouse::InvalidArgument);
  EXPECT_THROW(lighthouse::train::split_heldout(all, 1.0, &train, &held),
               lighthouse::InvalidArgument);
}

}  // namespace
