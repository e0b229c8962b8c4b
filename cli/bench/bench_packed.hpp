// `lighthouse bench --packed-docs LEN`: what packed documents and padding cost. For each N,
// Lighthouse forward+backward of one long sequence of N tokens against the same tokens packed
// as documents of LEN tokens (cu_seqlens; the last one shorter), timed side by side in one loop;
// and, where N is not a valid length, N (padded by the core) against the next valid length N'
// run directly: the price of the padding copies. CPU and CUDA code paths alike.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lighthouse/attention.hpp"

namespace lighthouse::cli {

struct PackedBenchSetup {
  Device device = Device::kCPU;
  DType dtype = DType::kFloat32;
  Config config;
  std::int64_t batch = 1, heads = 8, kv_heads = 0, head_dim = 128;
  std::vector<std::int64_t> seqs;
  std::int64_t doc_len = 4096;  // --packed-docs
  int repeats = 3, warmup = 1, threads = 0;
  bool deterministic = true;
  std::uint64_t seed = 0;
  bool quiet = false;
  std::string json;
};

// Returns the exit status.
int run_bench_packed(const PackedBenchSetup& setup);

}  // namespace lighthouse::cli
