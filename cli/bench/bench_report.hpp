// What `lighthouse bench` reports: the table on stdout, the JSON document and the SVG chart.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_measure.hpp"
#include "common/machine.hpp"

namespace lighthouse::cli {

struct BenchRow {
  Impl impl = Impl::kLighthouse;
  std::int64_t seq = 0;                 // the N this row belongs to (floor rows too)
  std::int64_t S = 0;                   // the length the attention runs at (N for dense)
  double fwd_flops = 0, bwd_flops = 0;  // the plan's attention FLOPs
  double scorer_flops = 0;              // the plan's scorer FLOPs (lighthouse rows; forward only)
  std::optional<Timing> timing;         // empty if the run failed
  std::string error;
};

struct BenchSkip {
  Impl impl;
  std::int64_t seq;
  std::string reason;
};

struct BenchReport {
  Device device = Device::kCPU;
  DType dtype = DType::kFloat32;
  Config config;
  std::int64_t batch = 1, heads = 1, head_dim = 64;
  std::int64_t kv_heads = 0;  // heads of k and v (grouped-query attention); 0 = heads
  int repeats = 1, warmup = 0, threads = 0;
  bool deterministic = true;
  bool side_by_side = false;  // lighthouse and floor timed in one loop per N (measure_side_by_side)
  std::uint64_t seed = 0;
  std::vector<std::int64_t> seqs;
  std::vector<Impl> impls;
  MachineInfo machine;
  int sgemm_size = 0;
  std::optional<double> sgemm_gflops;
  std::int64_t peak_rss_bytes = 0;
  std::vector<BenchRow> rows;
  std::vector<BenchSkip> skipped;
};

void print_table(const BenchReport& report, bool stages, std::ostream& out);
nlohmann::json report_json(const BenchReport& report);
std::string report_svg(const BenchReport& report);

}  // namespace lighthouse::cli
