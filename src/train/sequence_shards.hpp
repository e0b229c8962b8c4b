// Context parallelism in the trainer's models: which tokens of a [batch, seq] batch one rank
// holds. Every rank gets the whole batch (all ranks draw the same batches from the same data),
// keeps its two chunks of every sequence (include/lighthouse/context_parallel.hpp: chunk r and
// 2W - 1 - r of 2W, concatenated in that order, [batch, seq / W] rows) and runs every
// token-local layer on them unchanged; the attention layers pass the communicator to the
// library. What the model reports per token (losses, logits rows) is all-gathered and put back
// into whole-batch order here, so the trainer, the probes and the checkpoints see the same
// numbers as on one rank.
#pragma once

#include <cstdint>
#include <vector>

#include "lighthouse/context_parallel.hpp"

namespace lighthouse::train {

struct SequenceShards {
  int world = 1, rank = 0;
  std::int64_t batch = 0, seq = 0;  // the whole batch

  SequenceShards() = default;
  SequenceShards(int world_, int rank_, std::int64_t batch_, std::int64_t seq_)
      : world(world_), rank(rank_), batch(batch_), seq(seq_) {}

  // Whether seq splits into 2W chunks; the models run a sequence that does not (a passkey
  // length, say) whole on every rank instead.
  static bool fits(int world, std::int64_t seq) { return seq % (2 * world) == 0; }

  std::int64_t chunk() const { return seq / (2 * world); }
  std::int64_t local_seq() const { return 2 * chunk(); }
  std::int64_t local_rows() const { return batch * local_seq(); }

  // The sequence position of this rank's local position j.
  std::int64_t position(std::int64_t j) const {
    const int which = j < chunk() ? 0 : 1;
    return cp_chunk(world, rank, which) * chunk() + j - which * chunk();
  }

  // The rank that holds sequence position t, and t's local position there.
  int owner(std::int64_t t) const {
    const auto g = static_cast<int>(t / chunk());
    return g < world ? g : 2 * world - 1 - g;
  }
  std::int64_t local_position(std::int64_t t) const {
    const std::int64_t g = t / chunk();
    return (g < world ? 0 : chunk()) + t % chunk();
  }

  // This rank's rows of a whole [batch, seq] array, [batch, local_seq()].
  template <typename T>
  void take(const T* whole, T* local) const {
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t j = 0; j < local_seq(); ++j) {
        local[b * local_seq() + j] = whole[b * seq + position(j)];
      }
    }
  }

  // `gathered` ([world][batch, local_seq()][width], every rank's local rows in rank order, as an
  // all-gather leaves them) into whole-batch order ([batch, seq][width]).
  template <typename T>
  void put_back(const T* gathered, std::int64_t width, T* whole) const {
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t t = 0; t < seq; ++t) {
        const T* from =
            gathered + ((owner(t) * batch + b) * local_seq() + local_position(t)) * width;
        T* to = whole + (b * seq + t) * width;
        for (std::int64_t i = 0; i < width; ++i) to[i] = from[i];
      }
    }
  }
};

}  // namespace lighthouse::train
