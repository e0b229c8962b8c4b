// `lighthouse bench --cp W`: context parallelism measured. For each N, Lighthouse (this design:
// the all-to-alls carry the gathered rows) and dense attention through the same path (Ulysses:
// the all-to-alls carry the tokens): forward and backward per rank (the slowest rank's median),
// the time in collectives next to the compute, and the bytes each rank sent (measured by the
// communicator, with the plan's estimate); on one process also the single-device time of the
// whole sequence, side by side.
//
// Ranks: on the CPU, W threads of this process (the thread communicator); on CUDA, one process
// per GPU over NCCL, started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK; the NCCL id through a
// file, LIGHTHOUSE_NCCL_ID_FILE or /tmp/lighthouse-nccl-<MASTER_PORT>.id), or this process alone
// (W = 1: a real one-rank NCCL communicator). Rank 0 prints.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lighthouse/attention.hpp"

namespace lighthouse::cli {

struct CpBenchSetup {
  Device device = Device::kCPU;
  DType dtype = DType::kFloat32;
  Config config;
  std::int64_t batch = 1, heads = 8, head_dim = 128;
  std::vector<std::int64_t> seqs;
  bool dense = true, lighthouse = true;
  int world = 1;  // --cp
  int repeats = 3, warmup = 1, threads = 0;
  bool deterministic = true;
  std::uint64_t seed = 0;
  bool quiet = false;
  std::string json;  // also write the rows as JSON (rank 0)
};

// Returns the exit status (0, or 1 when a measurement failed).
int run_bench_cp(const CpBenchSetup& setup);

}  // namespace lighthouse::cli
