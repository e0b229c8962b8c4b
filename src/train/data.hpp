// Training data as one stream of byte tokens (0..255, plus kSeparator between documents), and
// the packer that cuts it into [batch, seq] input/target pairs.
//
// Sources: (a) a built-in generated corpus of one of two kinds (CorpusKind) whose documents define
// named facts and query them later, between locally predictable filler (counting runs, sentences
// from a tiny grammar): the queried digits can only be predicted by attending back to the fact,
// so long-range attention shows in the loss; (b) text files read as bytes, one document per file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/rng.hpp"

namespace lighthouse::train {

using TokenStream = std::vector<std::int32_t>;

// The built-in corpus's two layouts (`lighthouse train --corpus`).
enum class CorpusKind {
  // "facts": about one fact per 400 bytes, all set at the top ("set kqv = 5832."), then filler,
  // then the second half mixes filler with queries ("ask kqv: 5832."): every fact is asked
  // thousands of bytes after it was set, and the answer digits are ~2% of the tokens. The CPU
  // main job's corpus (docs/RESULTS.md, section 2).
  kFacts,
  // "recall": built for a model to learn retrieval in few steps (docs/RESULTS.md, section 3).
  // Keys are upper case and digits appear only in values, and the value follows the key
  // directly ("set KQV5832." and "ask KQV5832."), so every answer digit is predicted by the
  // classic induction pattern (find the earlier occurrence, copy what came after it). Line by
  // line: a new fact (1 in 16), a query (10 in 16: half of one of the last four facts, half of
  // any earlier fact of the document, so distances run from one line to the whole document), or
  // a grammar sentence.
  kRecall,
};
// "facts" or "recall"; InvalidArgument naming "--corpus" otherwise.
CorpusKind parse_corpus_kind(const std::string& name);
const char* corpus_kind_name(CorpusKind kind);

// A line of the built-in corpora's tiny grammar ("the red fox sees the old dog.\n"): lower-case
// letters, spaces, a period and a newline only.
std::string grammar_sentence(Rng& rng);

// A fact's key: three random letters, lower case for "facts", upper case for "recall".
std::string random_key(Rng& rng, CorpusKind kind);
// A random key that `text` does not contain (drawn again until it does not): a needle's key, so
// that only the needle and its query write it.
std::string unused_key(Rng& rng, CorpusKind kind, const std::string& text);

// One generated document of about `bytes` bytes (at least 256), without the separator.
std::string generate_document(Rng& rng, std::int64_t bytes, CorpusKind kind = CorpusKind::kFacts);
// Documents from `seed`, each followed by kSeparator, until at least `tokens` tokens. Each is
// `doc_bytes` long, or with doc_bytes_min > 0 of a length drawn log-uniformly from
// [doc_bytes_min, doc_bytes] (InvalidArgument naming "--doc-bytes-min" unless <= doc_bytes).
// far_queries (recall only; 0..1, InvalidArgument naming "--far-queries" otherwise): the share of
// documents that also hold 8 facts, each written once at a random depth and asked only at the
// document's end — long-range retrieval, which the recall corpus otherwise rarely asks (its facts
// are asked about ten times each, so most queries' keys were written a few lines back).
TokenStream generate_corpus(std::int64_t tokens, std::uint64_t seed, std::int64_t doc_bytes,
                            CorpusKind kind = CorpusKind::kFacts, std::int64_t doc_bytes_min = 0,
                            double far_queries = 0);

// The long-range tokens of one packed sequence of the built-in corpus (either kind): the
// positions i whose target is one of the four digits answering a query ("ask kqv: 5832." or
// "ask KQV5832.") whose fact ("set kqv = 5832." or "set KQV5832.") is among the sequence's
// inputs, in the same document. Only attention that
// reaches back to the fact can predict them (about ln 10 = 2.3 nats each without it), so their
// mean loss shows whether a model learned the long-range structure. inputs and targets are one
// [seq] pair as the Packer cuts them (targets[i] = the token after inputs[i]).
// `first_digits`, when given, receives the subset whose target is an answer's first digit: the one
// digit that only matching the query's whole key to the fact's can predict (the later digits
// can also be copied by matching the digit before them), which is what the passkey asks.
// `first_distances`, when given with first_digits, receives for each of them how many tokens
// back the key was last written (its fact or an earlier query of it, which repeats the value):
// the distance a copy has to reach.
std::vector<std::int64_t> recall_positions(const std::int32_t* inputs, const std::int32_t* targets,
                                           std::int64_t seq,
                                           std::vector<std::int64_t>* first_digits = nullptr,
                                           std::vector<std::int64_t>* first_distances = nullptr);

// The distance classes of the evaluations' first-digit loss by distance: [0, 128), [128, 1K),
// [1K, 8K), [8K, inf) tokens back to the key's last mention.
inline constexpr std::int64_t kRecallDistanceBounds[] = {128, 1024, 8192};
inline constexpr int kRecallDistanceClasses = 4;
int recall_distance_class(std::int64_t distance);

// Every file's bytes followed by kSeparator, in the order given. Throws lighthouse::Error naming
// a file that cannot be opened or read completely, InvalidArgument("--data", ...) when the
// files hold no bytes at all.
TokenStream read_text_files(const std::vector<std::string>& paths);

// Reference losses that need no attention at all: the cross-entropy (nats per token) on `heldout`
// of an add-one-smoothed count model of `train` that sees `context` previous tokens (0: unigram,
// 1: bigram). A trained model should be well below both. InvalidArgument for another context or
// a held-out stream of fewer than 2 tokens.
double ngram_cross_entropy(const TokenStream& train, const TokenStream& heldout, int context);

// Splits off the last `fraction` of the stream as held-out data. Each part must keep >= 2 tokens
// (one input and one target); otherwise InvalidArgument naming "heldout".
void split_heldout(const TokenStream& all, double fraction, TokenStream* train,
                   TokenStream* heldout);

// Packs a stream into consecutive sequences: sequence i covers stream positions
// [p, p + seq] (seq inputs, targets shifted by one) and the next starts at p + seq. Positions
// wrap around modulo the stream length, so a stream shorter than one sequence is repeated and
// nothing past its end is ever read. The position is the whole state (for checkpoints).
class Packer {
 public:
  Packer(const TokenStream* stream, std::int64_t seq, std::uint64_t position = 0);
  // Fills inputs and targets, each [batch, seq]. With groups = D > 1 (data parallelism) the
  // packer steps over groups * batch sequences and keeps those at indices group, group + D,
  // group + 2D, ... of them: D packers at one position, one per group, read together exactly the
  // sequences of one packer with D times the batch, and end at its position. InvalidArgument
  // naming "group" unless 0 <= group < groups.
  void next(std::int64_t batch, std::int32_t* inputs, std::int32_t* targets, int groups = 1,
            int group = 0);
  std::uint64_t position() const { return position_; }
  void seek(std::uint64_t position) { position_ = position % stream_->size(); }
  const TokenStream& stream() const { return *stream_; }

 private:
  const TokenStream* stream_;
  std::int64_t seq_;
  std::uint64_t position_;
};

}  // namespace lighthouse::train
