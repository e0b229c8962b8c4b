// Data parallelism across context-parallel groups (docs/DESIGN.md, "The trainer's --cp W"):
// WORLD_SIZE = D * W ranks form D groups of W consecutive ranks; each group trains on its own
// sequences of every micro-batch, and the weight gradients are summed over the whole world.
#pragma once

#include <string>

#include "lighthouse/error.hpp"

namespace lighthouse::train {

// Where world rank `rank` of `world` sits: group rank / W, CP rank rank % W (consecutive ranks
// share a group: on one node they share the fastest links, which the CP all-to-alls use most).
struct DataParallelRank {
  int groups = 1;   // D
  int group = 0;    // this rank's group, 0..D-1
  int cp_rank = 0;  // this rank's place in its group, 0..W-1
};

// InvalidArgument naming "--cp" when cp (W >= 1) does not divide world (WORLD_SIZE).
inline DataParallelRank data_parallel_rank(int world, int rank, int cp) {
  if (cp < 1 || world < 1 || world % cp != 0) {
    throw InvalidArgument(
        "--cp", std::to_string(cp),
        "must divide the number of processes (WORLD_SIZE = " + std::to_string(world) +
            "): WORLD_SIZE = D * W runs D data-parallel groups of W context-parallel ranks, e.g. "
            "torchrun --nproc-per-node 8 lighthouse train --device cuda --cp 2 (D = 4)");
  }
  if (rank < 0 || rank >= world) {
    throw InvalidArgument("RANK", std::to_string(rank),
                          "must be in [0, WORLD_SIZE = " + std::to_string(world) + ")");
  }
  return {world / cp, rank / cp, rank % cp};
}

}  // namespace lighthouse::train
