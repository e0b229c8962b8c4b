// `lighthouse bench`: latency of dense attention, Lighthouse and its floor (dense attention at the
// gathered length S) over sequence lengths, with achieved GFLOP/s against the machine's SGEMM
// rate on the CPU. The table goes to stdout, progress to stderr; --json and --plot write files
// atomically once all measurements are done.
#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "args.hpp"
#include "atomic_text.hpp"
#include "bench_measure.hpp"
#include "bench_report.hpp"
#include "commands.hpp"
#include "lighthouse/backend.hpp"
#include "lighthouse/plan.hpp"
#include "machine.hpp"
#include "progress.hpp"

namespace lighthouse::cli {

namespace {

struct BenchArgs {
  std::string device = "cpu";
  // Empty = the device's default (see defaults_for).
  std::string seq, batch, heads, head_dim, levels, pool, topk, impl, repeats, warmup, dtype;
  std::string threads = "0", seed = "0", sgemm_size = "2048";
  std::string json, plot, deterministic;
  bool stages = false, quiet = false;
};

struct Defaults {
  const char *seq, *batch, *heads, *head_dim, *levels, *pool, *topk, *impl, *repeats, *warmup,
      *dtype;
};

Defaults defaults_for(Device device) {
  if (device == Device::kCUDA) {
    return {"8192,16384,32768,65536,131072,262144,524288",
            "1",
            "8",
            "128",
            "3",
            "4",
            "2048",
            "dense,lighthouse,floor",
            "10",
            "3",
            "bfloat16"};
  }
  return {"8192", "1", "4", "64", "3", "4", "512", "dense,lighthouse", "3", "1", "float32"};
}

const std::string& or_default(const std::string& given, const char* fallback, std::string& store) {
  if (!given.empty()) return given;
  store = fallback;
  return store;
}

std::vector<Impl> parse_impls(const std::string& text) {
  std::vector<Impl> impls;
  for (const std::string& name : split_list("--impl", text)) {
    Impl impl;
    if (name == "dense") {
      impl = Impl::kDense;
    } else if (name == "lighthouse") {
      impl = Impl::kLighthouse;
    } else if (name == "floor") {
      impl = Impl::kFloor;
    } else {
      reject("--impl", text, "each entry must be dense, lighthouse or floor, not \"" + name + "\"");
    }
    bool seen = false;
    for (Impl i : impls) seen = seen || i == impl;
    if (!seen) impls.push_back(impl);
  }
  return impls;
}

// One planned measurement; validated before anything runs.
struct Job {
  Impl impl;
  std::int64_t seq;
  Plan plan;  // the plan the implementation runs (levels 1 for dense and floor)
};

int run_bench(const BenchArgs& a) {
  const Device device = parse_device(a.device, "--device");
  const Defaults d = defaults_for(device);
  std::string s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11;
  const std::string& seq_text = or_default(a.seq, d.seq, s1);
  BenchReport report;
  report.device = device;
  report.batch = parse_int("--batch", or_default(a.batch, d.batch, s2), 1);
  report.heads = parse_int("--heads", or_default(a.heads, d.heads, s3), 1);
  report.head_dim = parse_int("--head-dim", or_default(a.head_dim, d.head_dim, s4), 1);
  report.config.levels = parse_int32("--levels", or_default(a.levels, d.levels, s5));
  report.config.pool = parse_int32("--pool", or_default(a.pool, d.pool, s6));
  report.config.topk = parse_int32("--topk", or_default(a.topk, d.topk, s7));
  validate(report.config);
  report.impls = parse_impls(or_default(a.impl, d.impl, s8));
  report.repeats = parse_int32("--repeats", or_default(a.repeats, d.repeats, s9), 1);
  report.warmup = parse_int32("--warmup", or_default(a.warmup, d.warmup, s10), 0);
  const std::string& dtype_text = or_default(a.dtype, d.dtype, s11);
  report.dtype = parse_dtype(dtype_text, "--dtype");
  if (report.dtype == DType::kInt32 || report.dtype == DType::kInt64) {
    reject("--dtype", dtype_text, "must be a floating-point dtype");
  }
  report.threads = parse_int32("--threads", a.threads, 0);
  // CUDA default "off": the dense baseline's deterministic cuDNN backward needs ~2 B H N^2 bytes
  // of workspace (out of memory from N = 128K on an H200), and PyTorch's SDPA, which the original
  // implementation's published numbers use, runs the fast algorithm too.
  const std::string det_text =
      a.deterministic.empty() ? (device == Device::kCUDA ? "off" : "on") : a.deterministic;
  if (det_text != "on" && det_text != "off")
    reject("--deterministic", det_text, "must be on or off");
  report.deterministic = det_text == "on";
  report.seed = static_cast<std::uint64_t>(parse_int("--seed", a.seed, 0));
  report.sgemm_size = parse_int32("--sgemm-size", a.sgemm_size, 0, 65536);
  for (const std::string& item : split_list("--seq", seq_text)) {
    report.seqs.push_back(parse_int("--seq", item, 1));
  }
  if (!a.json.empty()) check_writable_path("--json", a.json);
  if (!a.plot.empty()) check_writable_path("--plot", a.plot);

  // Every (impl, N) is planned and checked against the backend before the first measurement.
  // A configuration that does not fit an N the user asked for is an error; one that does not
  // fit an N of the default list is skipped with a note (e.g. K=2048 needs N >= 32768).
  Backend& backend = backend_for(device);
  Config dense_config = report.config;
  dense_config.levels = 1;
  std::vector<Job> jobs;
  for (std::int64_t n : report.seqs) {
    std::optional<Plan> lighthouse_plan;
    try {
      lighthouse_plan = make_plan(report.config, report.batch, n, report.heads, report.head_dim);
    } catch (const InvalidArgument& e) {
      const bool needs_it = std::find_if(report.impls.begin(), report.impls.end(), [](Impl i) {
                              return i != Impl::kDense;
                            }) != report.impls.end();
      if (needs_it && !a.seq.empty()) reject("--seq", std::to_string(n), e.what());
      if (needs_it) {
        for (Impl i : report.impls) {
          if (i != Impl::kDense) report.skipped.push_back({i, n, e.what()});
        }
      }
    }
    for (Impl impl : report.impls) {
      if (impl != Impl::kDense && !lighthouse_plan) continue;
      Plan plan;
      try {
        if (impl == Impl::kLighthouse) {
          plan = *lighthouse_plan;
        } else {
          const std::int64_t length = impl == Impl::kDense ? n : lighthouse_plan->S;
          plan = make_plan(dense_config, report.batch, length, report.heads, report.head_dim);
        }
      } catch (const InvalidArgument& e) {
        reject("--seq", std::to_string(n), e.what());
      }
      backend.check_supported(plan, report.dtype);
      jobs.push_back({impl, n, plan});
    }
  }
  if (jobs.empty()) reject("--seq", seq_text, "no sequence length fits this configuration");

  report.machine = machine_info();
  const bool with_sgemm = device == Device::kCPU && report.sgemm_size > 0;
  Progress progress(static_cast<int>(jobs.size()) + (with_sgemm ? 1 : 0), a.quiet);
  for (const BenchSkip& s : report.skipped) {
    progress.note(std::string("lighthouse bench: skipping ") + impl_name(s.impl) +
                  " at N=" + std::to_string(s.seq) + ": " + s.reason);
  }
  if (with_sgemm) {
    progress.step("sgemm " + std::to_string(report.sgemm_size) + "^3");
    report.sgemm_gflops = measure_sgemm_gflops(report.sgemm_size, report.threads, 3);
  }

  MeasureSetup setup;
  setup.device = device;
  setup.dtype = report.dtype;
  setup.repeats = report.repeats;
  setup.warmup = report.warmup;
  setup.threads = report.threads;
  setup.deterministic = report.deterministic;
  setup.stages = a.stages;
  bool any_failed = false;
  HostInputs inputs;
  for (const Job& job : jobs) {
    progress.step(std::string(impl_name(job.impl)) + " N=" + std::to_string(job.seq) +
                  (job.impl == Impl::kFloor ? " (S=" + std::to_string(job.plan.seq) + ")" : ""));
    // The same inputs for every implementation at one N; the floor sees their first S tokens
    // (fresh ones of its own if S > N).
    const Shape4 shape{report.batch, job.seq, report.heads, report.head_dim};
    if (inputs.shape != shape) inputs = random_inputs(report.seed, shape);
    BenchRow row;
    row.impl = job.impl;
    row.seq = job.seq;
    row.S = job.impl == Impl::kLighthouse ? job.plan.S : job.plan.seq;
    // Not for dense: at large N its runs take seconds each.
    setup.interleaved = job.impl != Impl::kDense;
    if (job.impl == Impl::kLighthouse) {
      row.fwd_flops = job.plan.attention_fwd_flops();
      row.bwd_flops = job.plan.attention_bwd_flops();
    } else {
      row.fwd_flops = job.plan.dense_fwd_flops();
      row.bwd_flops = job.plan.dense_bwd_flops();
    }
    const Config& config = job.impl == Impl::kLighthouse ? report.config : dense_config;
    try {
      if (job.impl != Impl::kFloor) {
        row.timing = measure(config, inputs, setup);
      } else if (job.plan.seq <= job.seq) {
        row.timing = measure(config, first_tokens(inputs, job.plan.seq), setup);
      } else {
        const Shape4 floor_shape{report.batch, job.plan.seq, report.heads, report.head_dim};
        row.timing = measure(config, random_inputs(report.seed, floor_shape), setup);
      }
    } catch (const Error& e) {
      row.error = e.what();
    } catch (const std::bad_alloc&) {
      row.error = "out of host memory";
    }
    if (!row.error.empty()) {
      any_failed = true;
      progress.note(std::string("lighthouse bench: ") + impl_name(job.impl) +
                    " N=" + std::to_string(job.seq) + " failed: " + row.error);
    }
    report.rows.push_back(row);
  }
  progress.finish();
  report.peak_rss_bytes = peak_rss_bytes();

  print_table(report, a.stages, std::cout);
  std::cout.flush();
  if (!a.json.empty()) write_text_atomically(a.json, report_json(report).dump(2) + "\n");
  if (!a.plot.empty()) write_text_atomically(a.plot, report_svg(report));
  return any_failed ? kExitRuntime : kExitOk;
}

}  // namespace

Command add_bench_command(CLI::App& parent) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* app = parent.add_subcommand(
      "bench", "Time dense attention, Lighthouse and its floor over sequence lengths");
  // A flag given twice takes its last value, as in most command-line tools.
  app->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app->footer(
      "For each N: forward, backward (from a forward's context) and forward+backward, each the\n"
      "median of --repeats after --warmup, on the same seeded random inputs for every impl.\n"
      "  dense      = dense causal attention at N (levels 1)\n"
      "  lighthouse = the configuration\n"
      "  floor      = dense causal attention at Lighthouse's gathered length S\n"
      "GFLOP/s use the plan's attention FLOPs; on the cpu they are also shown as a fraction of\n"
      "an SGEMM measured in the same run. Table on stdout, progress on stderr.\n"
      "Defaults, cpu:  seq 8192; B 1, H 4, D 64; L 3, p 4, K 512; float32; impl dense,lighthouse;\n"
      "                repeats 3, warmup 1\n"
      "          cuda: seq 8192,16384,...,524288; B 1, H 8, D 128; L 3, p 4, K 2048; bfloat16;\n"
      "                impl dense,lighthouse,floor; repeats 10, warmup 3\n"
      "A configuration whose first warm-up fwd+bwd takes over 1 s gets 1 warm-up and at most 3\n"
      "repeats. CUDA times are CUDA events on the default stream.\n"
      "Lengths of the default list that the configuration does not fit are skipped with a note;\n"
      "an explicit --seq that it does not fit is an error.");
  app->add_option("--device", args->device, "cpu or cuda")->capture_default_str()->type_name("DEV");
  app->add_option("--seq", args->seq, "sequence lengths N, comma-separated (64k = 65536)")
      ->type_name("N[,N...]");
  app->add_option("--batch", args->batch, "batch B")->type_name("B");
  app->add_option("--heads", args->heads, "heads H")->type_name("H");
  app->add_option("--head-dim", args->head_dim, "head dim D")->type_name("D");
  app->add_option("--levels", args->levels, "pyramid levels L")->type_name("L");
  app->add_option("--pool", args->pool, "pooling factor p")->type_name("P");
  app->add_option("--topk", args->topk, "top-k budget K")->type_name("K");
  app->add_option("--impl", args->impl, "implementations: dense, lighthouse, floor")
      ->type_name("LIST");
  app->add_option("--repeats", args->repeats, "timed runs per measurement (median)")
      ->type_name("R");
  app->add_option("--warmup", args->warmup, "untimed fwd+bwd runs first")->type_name("W");
  app->add_option("--dtype", args->dtype, "compute dtype (float32, bfloat16, float16, ...)")
      ->type_name("DTYPE");
  app->add_option("--threads", args->threads, "CPU threads, 0 = all")
      ->capture_default_str()
      ->type_name("T");
  app->add_option("--seed", args->seed, "seed of the random inputs")
      ->capture_default_str()
      ->type_name("S");
  app->add_option("--sgemm-size", args->sgemm_size,
                  "n of the reference n^3 SGEMM on the cpu (0 = skip)")
      ->capture_default_str()
      ->type_name("n");
  app->add_option("--json", args->json, "also write the results as JSON")->type_name("FILE");
  app->add_option("--plot", args->plot, "also write an SVG chart of fwd+bwd latency vs N")
      ->type_name("FILE.svg");
  app->add_option("--deterministic", args->deterministic,
                  "on|off: cuDNN's deterministic attention backward (default: on for cpu, where it "
                  "always is; off for cuda)")
      ->type_name("on|off");
  app->add_flag("--stages", args->stages, "print the per-stage breakdown of Lighthouse");
  app->add_flag("--quiet", args->quiet, "no progress on stderr");
  return {app, [args] { return run_bench(*args); }};
}

}  // namespace lighthouse::cli
