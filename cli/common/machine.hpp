// Facts about the machine a benchmark ran on, and its reference SGEMM rate: the CPU "roofline"
// that lighthouse bench compares achieved attention GFLOP/s against.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace lighthouse::cli {

struct MachineInfo {
  std::string hostname;
  std::string cpu_model;  // from /proc/cpuinfo; empty if unknown
  int hardware_threads = 0;
};

MachineInfo machine_info();

// GFLOP/s of square n x n x n cblas_sgemm products on `threads` threads (0 = all): the faster of
// one product on OpenBLAS's threads and one single-threaded product per thread side by side, each
// the median of `repeats` runs after one warm-up. Empty when the CLI was built without OpenBLAS.
std::optional<double> measure_sgemm_gflops(int n, int threads, int repeats);

// The process's peak resident set size so far, in bytes.
std::int64_t peak_rss_bytes();

}  // namespace lighthouse::cli
