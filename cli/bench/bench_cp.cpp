#include "bench/bench_cp.hpp"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_measure.hpp"
#include "common/args.hpp"
#include "common/atomic_text.hpp"
#include "common/device_io.hpp"
#include "common/format.hpp"
#include "common/nccl_id.hpp"
#include "common/progress.hpp"
#include "lighthouse/communicator.hpp"
#include "lighthouse/context_parallel.hpp"
#include "lighthouse/device.hpp"

namespace lighthouse::cli {

namespace {

// One rank's measurement of one configuration: medians of the un-instrumented runs, the split
// of one instrumented run (its per-stage times add synchronisations on CUDA), the bytes sent.
struct RankTiming {
  double fwd_ms = 0, bwd_ms = 0;
  double comm_fwd_ms = 0, comm_bwd_ms = 0;  // in collectives (with their packing copies)
  double sent_fwd = 0, sent_bwd = 0;        // bytes this rank sent
};
constexpr std::size_t kTimingFields = sizeof(RankTiming) / sizeof(double);

struct Row {
  std::string impl;  // "lighthouse" or "dense"
  std::int64_t seq = 0, S = 0;
  RankTiming slowest;          // per field, the largest over the ranks
  CpTraffic est_fwd, est_bwd;  // the plan's estimate, per rank
  std::int64_t ulysses_fwd = 0, ulysses_bwd = 0;
  std::optional<double> single_fwd, single_bwd;  // one device, the whole sequence
  std::string error;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty()      ? 0
         : v.size() % 2 ? v[v.size() / 2]
                        : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// Wall-clock milliseconds of `work` between two device synchronisations (the collectives of
// NCCL run on the communicator's stream, not the default one that CUDA events would time).
double wall_ms(Device device, const std::function<void()>& work) {
  synchronize(device);
  const auto t0 = std::chrono::steady_clock::now();
  work();
  synchronize(device);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

RankTiming measure_rank(Communicator& comm, const Config& config, const HostInputs& whole,
                        const CpBenchSetup& s, int threads) {
  const int world = comm.size(), rank = comm.rank();
  const Shape4 local{whole.shape[0], whole.shape[1] / world, whole.shape[2], whole.shape[3]};
  auto mine = [&](const std::vector<float>& all) {
    std::vector<float> part(static_cast<std::size_t>(local[0] * local[1] * local[2] * local[3]));
    shard(TensorView::contiguous(const_cast<float*>(all.data()), DType::kFloat32, Device::kCPU,
                                 {whole.shape[0], whole.shape[1], whole.shape[2], whole.shape[3]}),
          world, rank,
          TensorView::contiguous(part.data(), DType::kFloat32, Device::kCPU,
                                 {local[0], local[1], local[2], local[3]}));
    return upload(part.data(), local, s.dtype, s.device);
  };
  const Tensor q = mine(whole.q), k = mine(whole.k), v = mine(whole.v), dout = mine(whole.dout);
  const Tensor out = allocate(local, s.dtype, s.device), dq = allocate(local, s.dtype, s.device),
               dk = allocate(local, s.dtype, s.device), dv = allocate(local, s.dtype, s.device);
  Options o;
  o.threads = threads;
  o.comm = &comm;
  o.stream = comm.stream();
  o.deterministic = s.deterministic;
  for (int w = 0; w < s.warmup; ++w) {
    Context ctx;
    forward(config, q, k, v, out, ctx, o);
    backward(ctx, dout, dq, dk, dv, o);
  }
  std::vector<double> fwd, bwd;
  Context ctx;
  for (int r = 0; r < s.repeats; ++r) {
    fwd.push_back(wall_ms(s.device, [&] { forward(config, q, k, v, out, ctx, o); }));
  }
  for (int r = 0; r < s.repeats; ++r) {
    bwd.push_back(wall_ms(s.device, [&] { backward(ctx, dout, dq, dk, dv, o); }));
  }
  RankTiming t;
  t.fwd_ms = median(fwd);
  t.bwd_ms = median(bwd);
  StageTimes stages;
  o.times = &stages;
  comm.reset_stats();
  forward(config, q, k, v, out, ctx, o);
  t.comm_fwd_ms = stages.communication;
  t.sent_fwd = static_cast<double>(comm.stats().bytes_sent);
  comm.reset_stats();
  backward(ctx, dout, dq, dk, dv, o);
  t.comm_bwd_ms = stages.communication;
  t.sent_bwd = static_cast<double>(comm.stats().bytes_sent);
  return t;
}

// Every rank's timing, field by field the largest (the slowest rank sets the step's pace).
RankTiming slowest_of(Communicator& comm, const RankTiming& mine) {
  std::vector<RankTiming> all(static_cast<std::size_t>(comm.size()));
  comm.all_gather_host(&mine, all.data(), sizeof(RankTiming));
  RankTiming worst = all[0];
  for (const RankTiming& t : all) {
    const auto* f = reinterpret_cast<const double*>(&t);
    auto* w = reinterpret_cast<double*>(&worst);
    for (std::size_t i = 0; i < kTimingFields; ++i) w[i] = std::max(w[i], f[i]);
  }
  return worst;
}

std::string ms_text(double ms) {
  return fixed(ms, ms < 10 ? 2 : 1);
}

void print_rows(const CpBenchSetup& s, int world, bool in_process, const std::vector<Row>& rows) {
  std::cout << "lighthouse bench --cp " << world << ": " << device_name(s.device) << ", "
            << dtype_name(s.dtype) << ", B " << s.batch << ", H " << s.heads << ", D " << s.head_dim
            << ", L" << s.config.levels << " p" << s.config.pool << " K" << s.config.topk << "; "
            << world
            << (in_process ? " ranks (threads of this process)" : " ranks (one process per GPU)")
            << "\n";
  std::cout << "times: the slowest rank's median; coll = time in collectives (with their packing "
               "copies) of one instrumented run; sent = bytes one rank sent (estimate)\n";
  std::cout << "       N  impl          fwd ms    bwd ms   coll fwd/bwd ms   sent fwd / bwd per "
               "rank (estimate)          1 device fwd+bwd ms  speed-up\n";
  for (const Row& r : rows) {
    std::cout << pad_left(std::to_string(r.seq), 8) << "  " << r.impl
              << std::string(r.impl.size() < 12 ? 12 - r.impl.size() : 1, ' ');
    if (!r.error.empty()) {
      std::cout << "failed: " << r.error << "\n";
      continue;
    }
    const RankTiming& t = r.slowest;
    const auto b = [](double v) { return bytes_text(v); };
    std::cout << pad_left(ms_text(t.fwd_ms), 8) << pad_left(ms_text(t.bwd_ms), 10)
              << pad_left(ms_text(t.comm_fwd_ms) + " / " + ms_text(t.comm_bwd_ms), 18)
              << pad_left(b(t.sent_fwd) + " / " + b(t.sent_bwd) + " (" +
                              b(static_cast<double>(r.est_fwd.total())) + " / " +
                              b(static_cast<double>(r.est_bwd.total())) + ")",
                          43);
    if (r.single_fwd && r.single_bwd) {
      const double one = *r.single_fwd + *r.single_bwd;
      std::cout << pad_left(ms_text(one), 21)
                << pad_left(fixed(one / (t.fwd_ms + t.bwd_ms), 2) + "x", 10);
    } else {
      std::cout << pad_left("-", 21) << pad_left("-", 10);
    }
    std::cout << "\n";
  }
}

nlohmann::json rows_json(const CpBenchSetup& s, int world, const std::vector<Row>& rows) {
  nlohmann::json out = {{"device", device_name(s.device)},
                        {"dtype", dtype_name(s.dtype)},
                        {"cp", world},
                        {"batch", s.batch},
                        {"heads", s.heads},
                        {"head_dim", s.head_dim},
                        {"levels", s.config.levels},
                        {"pool", s.config.pool},
                        {"topk", s.config.topk},
                        {"rows", nlohmann::json::array()}};
  for (const Row& r : rows) {
    nlohmann::json j = {{"impl", r.impl}, {"seq", r.seq}, {"S", r.S}};
    if (!r.error.empty()) {
      j["error"] = r.error;
    } else {
      j["fwd_ms"] = r.slowest.fwd_ms;
      j["bwd_ms"] = r.slowest.bwd_ms;
      j["fwd_bwd_ms"] = r.slowest.fwd_ms + r.slowest.bwd_ms;
      j["collective_fwd_ms"] = r.slowest.comm_fwd_ms;
      j["collective_bwd_ms"] = r.slowest.comm_bwd_ms;
      j["bytes_sent_fwd"] = static_cast<std::int64_t>(r.slowest.sent_fwd);
      j["bytes_sent_bwd"] = static_cast<std::int64_t>(r.slowest.sent_bwd);
      j["estimate_fwd"] = r.est_fwd.total();
      j["estimate_bwd"] = r.est_bwd.total();
      j["ulysses_estimate_fwd"] = r.ulysses_fwd;
      j["ulysses_estimate_bwd"] = r.ulysses_bwd;
      if (r.single_fwd) j["single_device_fwd_ms"] = *r.single_fwd;
      if (r.single_bwd) j["single_device_bwd_ms"] = *r.single_bwd;
    }
    out["rows"].push_back(j);
  }
  return out;
}

}  // namespace

int run_bench_cp(const CpBenchSetup& s) {
  check_available(s.device);
  // The ranks: threads here (CPU), or the processes torchrun started (CUDA, NCCL).
  std::unique_ptr<Communicator> nccl;
  int world = s.world;
  if (s.device != Device::kCPU) {
    nccl = make_nccl_communicator_from_env(nccl_id_file());
    if (nccl->size() != s.world) {
      reject("--cp", std::to_string(s.world),
             "must be the number of processes (WORLD_SIZE = " + std::to_string(nccl->size()) +
                 "): on GPUs one process per rank, e.g. torchrun --nproc-per-node " +
                 std::to_string(s.world) + " lighthouse bench --device cuda --cp " +
                 std::to_string(s.world));
    }
  }
  const bool in_process = !nccl || nccl->size() == 1;
  const bool printer = !nccl || nccl->rank() == 0;
  Config dense = s.config;
  dense.levels = 1;
  struct Job {
    std::string impl;
    Config config;
    std::int64_t seq;
    ShardPlan sp;
  };
  std::vector<Job> jobs;
  for (std::int64_t n : s.seqs) {
    for (const bool lh : {true, false}) {
      if ((lh && !s.lighthouse) || (!lh && !s.dense)) continue;
      const Config& c = lh ? s.config : dense;
      try {
        ShardPlan sp = make_shard_plan(c, s.batch, n, s.heads, s.head_dim, world);
        check_supported(s.device, sp.plan, s.dtype);
        jobs.push_back({lh ? "lighthouse" : "dense", c, n, sp});
      } catch (const InvalidArgument& e) {
        if (e.param() == "cp") throw;
        reject("--seq", std::to_string(n), e.what());
      }
    }
  }
  Progress progress(static_cast<int>(jobs.size()), s.quiet || !printer);
  std::vector<Row> rows;
  HostInputs inputs;
  const int threads_per_rank =
      std::max(1, (s.threads > 0 ? s.threads : omp_get_max_threads()) / (nccl ? 1 : world));
  for (const Job& job : jobs) {
    progress.step(job.impl + " N=" + std::to_string(job.seq));
    Row row;
    row.impl = job.impl == "dense" ? "dense" : "lighthouse";
    row.seq = job.seq;
    row.S = job.sp.plan.S;
    row.est_fwd = job.sp.forward_traffic(s.dtype);
    row.est_bwd = job.sp.backward_traffic(s.dtype);
    row.ulysses_fwd = job.sp.ulysses_forward_traffic(s.dtype).total();
    row.ulysses_bwd = job.sp.ulysses_backward_traffic(s.dtype).total();
    const Shape4 shape{s.batch, job.seq, s.heads, s.head_dim};
    if (inputs.shape != shape) inputs = random_inputs(s.seed, shape);
    try {
      if (nccl) {
        row.slowest =
            slowest_of(*nccl, measure_rank(*nccl, job.config, inputs, s, threads_per_rank));
      } else {
        run_thread_ranks(world, [&](Communicator& comm) {
          const RankTiming worst =
              slowest_of(comm, measure_rank(comm, job.config, inputs, s, threads_per_rank));
          if (comm.rank() == 0) row.slowest = worst;
        });
      }
      if (in_process) {  // the whole sequence on one device, same inputs
        MeasureSetup one;
        one.device = s.device;
        one.dtype = s.dtype;
        one.repeats = s.repeats;
        one.warmup = s.warmup;
        one.threads = s.threads;
        one.deterministic = s.deterministic;
        const Timing t = measure(job.config, inputs, one);
        row.single_fwd = t.fwd_ms;
        row.single_bwd = t.bwd_ms;
      }
    } catch (const Error& e) {
      row.error = e.what();
    }
    rows.push_back(row);
  }
  progress.finish();
  bool failed = false;
  for (const Row& r : rows) failed = failed || !r.error.empty();
  if (printer) {
    print_rows(s, world, nccl == nullptr, rows);
    std::cout.flush();
    if (!s.json.empty()) write_text_atomically(s.json, rows_json(s, world, rows).dump(2) + "\n");
  }
  return failed ? kExitRuntime : kExitOk;
}

}  // namespace lighthouse::cli
