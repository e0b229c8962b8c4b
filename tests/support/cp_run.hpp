// Runs the library with context parallelism (W ranks as threads, the thread communicator) on a
// whole problem: shards the inputs, runs every rank's forward (and backward), and brings the
// results back unsharded, in the layout run_library() gives, for bitwise comparison.
#pragma once

#include <vector>

#include "lighthouse/communicator.hpp"
#include "support/library_run.hpp"

namespace lhtest {

struct CpOutputs : Outputs {
  std::vector<lighthouse::CommStats> forward_stats, backward_stats;  // per rank
  std::vector<lighthouse::StageTimes> forward_times;                 // per rank
};

CpOutputs run_cp(const Problem& problem, lighthouse::DType dtype, int world,
                 const lighthouse::Options& options = {}, bool with_backward = true);

}  // namespace lhtest
