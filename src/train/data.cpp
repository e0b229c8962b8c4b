// Text files as bytes, the held-out split and the sequence packer (see data.hpp).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>

#include "lighthouse/error.hpp"
#include "train/data.hpp"
#include "train/model.hpp"

namespace lighthouse::train {

TokenStream read_text_files(const std::vector<std::string>& paths) {
  TokenStream out;
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open for reading");
    std::string bytes;
    // Read in chunks until end of file: the byte count is whatever the file holds, never more.
    char chunk[1 << 16];
    while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
      bytes.append(chunk, static_cast<std::size_t>(in.gcount()));
    }
    if (in.bad()) throw Error(path + ": read error");
    for (unsigned char c : bytes) out.push_back(c);
    out.push_back(kSeparator);
  }
  if (static_cast<std::int64_t>(out.size()) == static_cast<std::int64_t>(paths.size())) {
    throw InvalidArgument("--data", paths.empty() ? "(none)" : paths.front(),
                          "the text files hold no bytes");
  }
  return out;
}

void split_heldout(const TokenStream& all, double fraction, TokenStream* train,
                   TokenStream* heldout) {
  if (!(fraction > 0.0 && fraction < 1.0)) {
    throw InvalidArgument("heldout", std::to_string(fraction), "must be in (0, 1)");
  }
  const auto n = static_cast<std::int64_t>(all.size());
  const auto held = static_cast<std::int64_t>(std::ceil(fraction * static_cast<double>(n)));
  if (held < 2 || n - held < 2) {
    throw InvalidArgument("heldout", std::to_string(fraction),
                          "splitting " + std::to_string(n) +
                              " tokens leaves fewer than 2 in the training or held-out part");
  }
  train->assign(all.begin(), all.end() - held);
  heldout->assign(all.end() - held, all.end());
}

Packer::Packer(const TokenStream* stream, std::int64_t seq, std::uint64_t position)
    : stream_(stream), seq_(seq), position_(position) {
  if (stream_->size() < 2) {
    throw InvalidArgument("stream", std::to_string(stream_->size()) + " tokens",
                          "needs >= 2 tokens (an input and a target)");
  }
  if (seq < 1) throw InvalidArgument("seq", std::to_string(seq), "must be >= 1");
  position_ %= stream_->size();
}

void Packer::next(std::int64_t batch, std::int32_t* inputs, std::int32_t* targets, int groups,
                  int group) {
  if (groups < 1) throw InvalidArgument("groups", std::to_string(groups), "must be >= 1");
  if (group < 0 || group >= groups) {
    throw InvalidArgument("group", std::to_string(group),
                          "must be in [0, groups = " + std::to_string(groups) + ")");
  }
  const std::uint64_t n = stream_->size();
  const std::int32_t* s = stream_->data();
  const std::uint64_t step = static_cast<std::uint64_t>(seq_) % n;  // one sequence
  for (std::int64_t j = 0; j < batch * groups; ++j) {
    if (j % groups == group) {
      const std::int64_t b = j / groups;
      std::uint64_t p = position_;
      for (std::int64_t i = 0; i < seq_; ++i) {
        inputs[b * seq_ + i] = s[p];
        p = p + 1 == n ? 0 : p + 1;
        targets[b * seq_ + i] = s[p];
      }
    }
    position_ = (position_ + step) % n;
  }
}

}  // namespace lighthouse::train
