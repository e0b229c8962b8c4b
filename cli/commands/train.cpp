// `lighthouse train`: the flags of the two-stage recipe (src/train/run.hpp) -- stage 1 with
// Lighthouse attention in every layer but the dense ones, stage 2 dense, on the same weights,
// optimizer state and schedule -- parsed into configs (train_output.cpp prints the run: progress
// on stderr, one JSON object per line in --metrics, a summary table on stdout). The loop itself,
// the probes, the checkpoints and --compare live in src/train/.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands/train_output.hpp"
#include "common/args.hpp"
#include "common/atomic_text.hpp"
#include "common/commands.hpp"
#include "common/format.hpp"
#include "common/json_config.hpp"
#include "common/machine.hpp"
#include "common/nccl_id.hpp"
#include "common/scorer_flags.hpp"
#include "lighthouse/communicator.hpp"
#include "lighthouse/device.hpp"
#include "lighthouse/error.hpp"
#include "plot/run_plot.hpp"
#include "train/compare.hpp"
#include "train/data_parallel.hpp"
#include "train/device_info.hpp"
#include "train/flops.hpp"
#include "train/language_model.hpp"
#include "train/presets.hpp"
#include "train/run.hpp"

namespace lighthouse::cli {

namespace {

// The defaults are the main job (scripts/main, `lighthouse train --compare`): both recipes in a
// few minutes on 2 CPU cores at a 4096-token context, where dense attention is most of a dense
// step (docs/PERF.md has the measurements behind each choice). Lighthouse L2 p8 K256 gives half
// the tokens full resolution and the rest 8-token blocks; configurations with fewer full-
// resolution tokens (L3, p4, K128) trained as fast but recovered worse after the switch. The
// last layer stays dense (default_dense_layers). `wsd` keeps the peak rate through stage 1 and
// anneals during the dense stage (cooldown = the 20% stage-2 share); an initial std of 0.06
// (not 0.02) and lr 5e-3 learn this small model markedly faster.
struct TrainArgs {
  std::string stage1_steps = "200", stage2_steps = "50";
  std::string levels = "2", pool = "8", topk = "256", dense_layers = "default";
  // The trainer's default is the causal selection (docs/RESULTS.md: after the dense recovery it
  // matched dense from scratch over 3 seeds, where the original's leaky selection ended 22%
  // worse); the library, `lighthouse attention` and the op keep the original's semantics.
  std::string selection = "causal";
  ScorerFlags scorer;
  std::string dim = "128", layers = "4", heads = "4", kv_heads = "0", hidden = "0";
  std::string init_std = "0.06";
  bool untied = false;
  bool pack_documents = false;
  std::string seq = "4096", batch = "1", accum = "1";
  std::string lr = "5e-3", min_lr_ratio = "0.1", warmup = "10", decay = "wsd", cooldown = "0.2";
  std::string weight_decay = "0.1", beta1 = "0.9", beta2 = "0.95", grad_clip = "1.0";
  std::string seed = "1", eval_every = "25", eval_batches = "2";
  std::vector<std::string> data;
  std::string corpus_tokens = "2m", doc_bytes = "0", heldout = "0.05", corpus = "facts",
              doc_bytes_min = "0", far_queries = "0";
  std::string metrics, threads = "0", sgemm_size = "1024";
  std::string save, save_every = "0", resume, init_from, config, dump_batches;
  bool save_initial = false;
  bool leak_probe = false, compare = false;
  std::string compare_dir = "compare", arms = "dense,original,causal";
  std::string leak_samples = "32", passkey_trials = "2", passkey_lengths = "auto";
  std::string device = "auto", precision = "auto", recompute = "none", deterministic = "auto";
  std::string preset, peak_tflops = "0";
  std::string cp = "0";
  bool quiet = false, dry_run = false;
  std::vector<std::string> preset_flags;  // the flags --preset set (not given explicitly)
};

std::vector<int> parse_dense_layers(const std::string& text, int layers) {
  if (text == "default") return train::default_dense_layers(layers);
  if (text == "none") return {};
  std::vector<int> out;
  for (const std::string& item : split_list("--dense-layers", text)) {
    out.push_back(parse_int32("--dense-layers", item, 0, layers - 1));
  }
  return out;
}

train::TrainConfig build_config(const TrainArgs& a) {
  train::TrainConfig c;
  c.model.dim = parse_int32("--dim", a.dim, 2, 1 << 16);
  c.model.layers = parse_int32("--layers", a.layers, 1, 1024);
  c.model.heads = parse_int32("--heads", a.heads, 1, 1024);
  c.model.kv_heads = parse_int32("--kv-heads", a.kv_heads, 0, 1024);
  c.model.hidden = parse_int32("--hidden", a.hidden, 0, 1 << 20);
  c.model.tied = !a.untied;
  c.model.pack_documents = a.pack_documents;
  c.model.init_std = parse_positive_double("--init-std", a.init_std);
  c.seq = parse_int("--seq", a.seq, 2, 1 << 24);
  c.batch = parse_int("--batch", a.batch, 1, 1 << 16);
  c.accum = parse_int("--accum", a.accum, 1, 1 << 16);
  c.stage1_steps = parse_int("--stage1-steps", a.stage1_steps, 0, 1 << 30);
  c.stage2_steps = parse_int("--stage2-steps", a.stage2_steps, 0, 1 << 30);
  c.lighthouse.levels = parse_int32("--levels", a.levels, 1, 16);
  c.lighthouse.pool = parse_int32("--pool", a.pool, 2, 1 << 16);
  c.lighthouse.topk = parse_int32("--topk", a.topk, 1, 1 << 30);
  c.lighthouse.selection = parse_selection(a.selection, "--selection");
  apply_scorer_flags(a.scorer, c.lighthouse);
  c.dense_layers = parse_dense_layers(a.dense_layers, c.model.layers);
  c.schedule.lr = parse_positive_double("--lr", a.lr);
  c.schedule.min_ratio = parse_double("--min-lr-ratio", a.min_lr_ratio, 0.0, 1.0);
  c.schedule.warmup = parse_int("--warmup", a.warmup, 0, 1 << 30);
  c.schedule.decay = train::parse_decay(a.decay, "--decay");
  c.schedule.cooldown = parse_double("--cooldown", a.cooldown, 0.0, 1.0);
  if (c.schedule.cooldown == 0.0) reject("--cooldown", a.cooldown, "must be in (0, 1]");
  c.adamw.weight_decay = parse_double("--weight-decay", a.weight_decay, 0.0, 1e6);
  c.adamw.beta1 = parse_double("--beta1", a.beta1, 0.0, 0.999999);
  c.adamw.beta2 = parse_double("--beta2", a.beta2, 0.0, 0.999999);
  c.grad_clip = parse_double("--grad-clip", a.grad_clip, 0.0, 1e12);
  c.seed = static_cast<std::uint64_t>(parse_int("--seed", a.seed, 0));
  c.eval_batches = parse_int("--eval-batches", a.eval_batches, 1, 1 << 20);
  c.threads = parse_int32("--threads", a.threads, 0, 4096);
  c.cp = parse_int32("--cp", a.cp, 0, 4096);
  if (c.stage1_steps + c.stage2_steps < 1) {
    reject("--stage2-steps", a.stage2_steps, "--stage1-steps + --stage2-steps must be >= 1");
  }
  c.validate();
  return c;
}

std::vector<std::int64_t> parse_passkey_lengths(const std::string& text, std::int64_t seq) {
  if (text == "auto") {
    std::vector<std::int64_t> out;
    for (std::int64_t n : {seq / 4, seq / 2, seq}) {
      if (n >= 64 && (out.empty() || out.back() != n)) out.push_back(n);
    }
    return out;
  }
  std::vector<std::int64_t> out;
  for (const std::string& item : split_list("--passkey-lengths", text)) {
    out.push_back(parse_int("--passkey-lengths", item, 64, 1 << 24));
  }
  return out;
}

// ---- the device ----------------------------------------------------------------------------

struct DeviceChoice {
  train::DeviceSetup setup;
  train::CudaModelOptions cuda;
  std::optional<train::CudaDeviceInfo> info;
};

void expect_one_of(const char* flag, const std::string& value,
                   const std::vector<std::string>& choices) {
  if (std::find(choices.begin(), choices.end(), value) != choices.end()) return;
  std::string list;
  for (std::size_t i = 0; i < choices.size(); ++i) {
    list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i];
  }
  reject(flag, value, "must be " + list);
}

// Why --device cuda cannot run here.
std::string no_cuda_reason() {
#if LIGHTHOUSE_WITH_CUDA
  if (!backend_available(Device::kCUDA)) return "no CUDA device is present (use --device cpu)";
  return "this build has no CUDA model (src/train/cuda); use --device cpu";
#else
  return "this lighthouse was built without CUDA (use --device cpu, or build with nvcc present)";
#endif
}

// The bytes of cuDNN's deterministic attention backward for a dense layer at this shape.
double deterministic_workspace_bytes(const train::TrainConfig& c) {
  const auto n = static_cast<double>(c.seq);
  return 2.0 * static_cast<double>(c.batch) * c.model.heads * n * n;
}

DeviceChoice resolve_device(const TrainArgs& a, const train::TrainConfig& c) {
  expect_one_of("--device", a.device, {"cpu", "cuda", "auto"});
  expect_one_of("--precision", a.precision, {"auto", "bf16", "fp32"});
  expect_one_of("--recompute", a.recompute, {"none", "attention", "layer"});
  expect_one_of("--deterministic", a.deterministic, {"auto", "on", "off"});
  if (a.device == "cuda" && !train::cuda_model_available()) {
    reject("--device", a.device, no_cuda_reason());
  }
  DeviceChoice d;
  const bool cuda = a.device == "cuda" || (a.device == "auto" && train::cuda_model_available());
  if (!cuda) {
    if (a.precision == "bf16") {
      reject("--precision", a.precision, "the CPU model trains in float32 (bf16 needs a GPU)");
    }
    // A preset's recompute is for its GPU runs; on the CPU there is nothing to recompute.
    const bool preset_recompute = std::find(a.preset_flags.begin(), a.preset_flags.end(),
                                            "recompute") != a.preset_flags.end();
    if (a.recompute != "none" && !preset_recompute) {
      reject("--recompute", a.recompute,
             "the CPU model keeps every activation: only none (recomputation needs a GPU)");
    }
    if (a.deterministic == "off") {
      reject("--deterministic", a.deterministic, "the CPU model is always deterministic");
    }
    d.setup.kind = "cpu";
    return d;
  }
  d.info = train::cuda_device_info(0);
  d.cuda.precision =
      a.precision == "fp32" ? train::Precision::kFloat32 : train::Precision::kBFloat16;
  d.cuda.recompute = a.recompute == "layer"       ? train::Recompute::kLayer
                     : a.recompute == "attention" ? train::Recompute::kAttention
                                                  : train::Recompute::kNone;
  if (a.deterministic == "auto") {
    // On where the deterministic backward's workspace takes at most a quarter of the GPU.
    d.cuda.deterministic = !d.info || deterministic_workspace_bytes(c) <=
                                          0.25 * static_cast<double>(d.info->total_bytes);
  } else {
    d.cuda.deterministic = a.deterministic == "on";
  }
  d.setup.kind = "cuda";
  d.setup.name = d.info ? d.info->name : "";
  d.setup.precision = a.precision == "fp32" ? "fp32" : "bf16";
  d.setup.recompute = a.recompute;
  d.setup.deterministic = d.cuda.deterministic;
  return d;
}

// What MFU is measured against: --peak-tflops; on the GPU its datasheet peak for the run's
// precision; on the CPU the SGEMM rate measured now.
std::optional<train::PeakRate> peak_rate(const TrainArgs& a, const DeviceChoice& d,
                                         const train::TrainConfig& c) {
  const double tflops = parse_double("--peak-tflops", a.peak_tflops, 0.0, 1e6);
  if (tflops > 0) return train::PeakRate{tflops * 1e12, "--peak-tflops", false};
  if (d.setup.kind == "cuda") {
    const bool bf16 = d.setup.precision == "bf16";
    if (!d.info) return std::nullopt;
    const std::optional<double> peak = train::gpu_peak_flops(d.info->name, bf16);
    if (!peak) return std::nullopt;
    return train::PeakRate{*peak, d.info->name + (bf16 ? " bf16" : " fp32") + " dense peak", false};
  }
  const int n = parse_int32("--sgemm-size", a.sgemm_size, 0, 8192);
  if (n == 0) return std::nullopt;
  const std::optional<double> gflops = measure_sgemm_gflops(n, c.threads, 3);
  if (!gflops) return std::nullopt;
  return train::PeakRate{
      *gflops * 1e9,
      std::to_string(n) + "^3, the faster of OpenBLAS's threads and one per thread, this run",
      true};
}

// ---- the two commands ------------------------------------------------------------------------

// Everything a run needs from the flags; the data is generated or read here.
struct Prepared {
  train::RunOptions options;
  train::TokenStream train_tokens, heldout_tokens;
  std::unique_ptr<Communicator> nccl;  // --cp on GPUs: this process's rank of the world
  // WORLD_SIZE = D * W > W: this process's CP group, split off `nccl` (on its stream; declared
  // after it, so destroyed first).
  std::unique_ptr<Communicator> nccl_group;
  bool lead() const { return !nccl || nccl->rank() == 0; }
};

// Checks every flag before anything is written or computed at length; then, unless `dry`,
// generates or reads the data and measures the peak rate.
std::unique_ptr<Prepared> prepare(const TrainArgs& a, bool dry = false) {
  auto p = std::make_unique<Prepared>();
  train::RunOptions& o = p->options;
  o.config = build_config(a);
  o.eval_every = parse_int("--eval-every", a.eval_every, 0, 1 << 30);
  const double heldout_fraction = parse_double("--heldout", a.heldout, 1e-6, 0.5);
  parse_int32("--sgemm-size", a.sgemm_size, 0, 8192);
  parse_double("--peak-tflops", a.peak_tflops, 0.0, 1e6);
  if (!a.metrics.empty()) check_writable_path("--metrics", a.metrics);
  if (!a.dump_batches.empty()) check_writable_path("--dump-batches", a.dump_batches);
  o.save = a.save;
  o.save_every = parse_int("--save-every", a.save_every, 0, 1 << 30);
  o.save_initial = a.save_initial;
  o.resume = a.resume;
  o.init_from = a.init_from;
  o.leak_probe = a.leak_probe;
  o.leak_samples = parse_int32("--leak-samples", a.leak_samples, 2, 1 << 20);
  o.passkey_trials = parse_int32("--passkey-trials", a.passkey_trials, 0, 1 << 20);
  o.passkey_lengths = parse_passkey_lengths(a.passkey_lengths, o.config.seq);
  o.corpus = train::parse_corpus_kind(a.corpus);
  const double far_queries = o.far_queries = parse_double("--far-queries", a.far_queries, 0.0, 1.0);
  if (far_queries > 0 && (o.corpus != train::CorpusKind::kRecall || !a.data.empty())) {
    reject("--far-queries", a.far_queries, "needs the built-in --corpus recall");
  }
  o.dump_batches = a.dump_batches;
  if (o.save_every > 0 && a.save.empty()) {
    reject("--save-every", a.save_every, "needs --save DIR (where the checkpoints go)");
  }
  if (o.save_initial && a.save.empty()) {
    reject("--save-initial", "true", "needs --save DIR (where the checkpoints go)");
  }
  if (!a.init_from.empty() && !a.resume.empty()) {
    reject("--init-from", a.init_from,
           "cannot be combined with --resume (which restores the whole run, weights included)");
  }
  const DeviceChoice device = resolve_device(a, o.config);
  o.device = device.setup;
  if (dry) return p;

  // Data: text files as bytes, or the built-in long-range corpus with documents half a sequence
  // long: a packed sequence starts anywhere in the stream, and with documents that short most
  // queries find their facts in the same window (with whole-sequence documents, about a quarter).
  if (!a.data.empty()) {
    train::split_heldout(train::read_text_files(a.data), heldout_fraction, &p->train_tokens,
                         &p->heldout_tokens);
  } else {
    const std::int64_t tokens = parse_int("--corpus-tokens", a.corpus_tokens, 2, 1ll << 32);
    std::int64_t doc_bytes = parse_int("--doc-bytes", a.doc_bytes, 0, 1ll << 30);
    if (doc_bytes == 0) doc_bytes = std::max<std::int64_t>(o.config.seq / 2, 256);
    const std::int64_t doc_min = parse_int("--doc-bytes-min", a.doc_bytes_min, 0, doc_bytes);
    train::split_heldout(
        train::generate_corpus(tokens, o.config.seed, doc_bytes, o.corpus, doc_min, far_queries),
        heldout_fraction, &p->train_tokens, &p->heldout_tokens);
  }
  o.train = &p->train_tokens;
  o.heldout = &p->heldout_tokens;
  o.data_files = a.data;

  // One pool of worker threads for everything on the CPU (attention, matmuls, the other
  // layers): the matmuls run single-threaded BLAS inside OpenMP's workers.
  if (o.config.threads > 0) omp_set_num_threads(o.config.threads);
  if (device.setup.kind == "cuda" && o.config.cp > 0) {
    // One process per GPU, as torchrun starts them (the GPU is LOCAL_RANK's).
    p->nccl = make_nccl_communicator_from_env(nccl_id_file());
    // WORLD_SIZE = D * W: D data-parallel groups of W consecutive ranks (--cp must divide it).
    const train::DataParallelRank where =
        train::data_parallel_rank(p->nccl->size(), p->nccl->rank(), o.config.cp);
    o.config.dp = where.groups;
    o.config.validate();
    if (where.groups > 1) {
      p->nccl_group = split_nccl_communicator(*p->nccl, o.config.cp);
      o.comm = p->nccl_group.get();
      o.world = p->nccl.get();
    } else {
      o.comm = p->nccl.get();
    }
  }
  if (device.setup.kind == "cuda") {
    train::CudaModelOptions cuda = device.cuda;
    if (p->nccl) {  // the rank's GPU (make_nccl_communicator_from_env selected it) and stream
      const char* local = std::getenv("LOCAL_RANK");
      cuda.device = local ? std::atoi(local) : 0;
      cuda.stream = p->nccl->stream();
    }
    o.make_model = [cuda](const train::TrainConfig& c) {
      return train::make_cuda_model(c.model, c.seed, c.adamw, cuda);
    };
  } else {
    o.make_model = [](const train::TrainConfig& c) {
      return train::make_cpu_model(c.model, c.seed, c.adamw, train::make_cpu_attention(c.threads));
    };
  }
  o.peak = peak_rate(a, device, o.config);
  return p;
}

// --dry-run: the configuration the flags give, and the FLOPs of a step of each stage.
int run_dry(const TrainArgs& a) {
  const std::unique_ptr<Prepared> p = prepare(a, true);
  const train::TrainConfig& c = p->options.config;
  std::cout << train::config_record_json(p->options, train::parameter_count(c.model)) << "\n";
  const std::vector<Config> stage1 =
      c.stage1_steps > 0 ? train::layer_attention(c.model.layers, c.lighthouse, *c.dense_layers)
                         : train::all_dense(c.model.layers);
  const auto per_step = [&](const std::vector<Config>& layers) {
    const train::StepFlops f = train::training_flops(c.model, layers, c.batch, c.seq);
    return flops_text(f.executed() * static_cast<double>(c.accum)) + " executed, " +
           flops_text(f.dense_equivalent() * static_cast<double>(c.accum)) + " dense-equivalent";
  };
  std::cout << "FLOPs per step: stage 1 " << per_step(stage1) << "; stage 2 "
            << per_step(train::all_dense(c.model.layers)) << "\n";
  return kExitOk;
}

int run_train(const TrainArgs& a) {
  const std::unique_ptr<Prepared> p = prepare(a);
  // With one process per rank, rank 0 alone prints and writes the metrics.
  RunPrinter printer(p->options, p->lead() ? a.metrics : "", a.quiet || !p->lead());
  train::run_training(p->options, printer.hooks());
  return kExitOk;
}

int run_compare(const TrainArgs& a) {
  const std::unique_ptr<Prepared> p = prepare(a);
  const train::TrainConfig& c = p->options.config;
  if (c.stage1_steps < 1) reject("--stage1-steps", a.stage1_steps, "--compare needs >= 1");
  if (!a.resume.empty()) reject("--resume", a.resume, "cannot be combined with --compare");
  if (c.cp != 0) reject("--cp", a.cp, "cannot be combined with --compare (train each arm apart)");
  const std::vector<train::Arm> arms = train::parse_arms(a.arms, "--arms");
  std::error_code ec;
  std::filesystem::create_directories(a.compare_dir, ec);
  if (ec) reject("--compare-dir", a.compare_dir, "cannot create the folder: " + ec.message());
  const std::string dir = a.compare_dir + "/";
  std::vector<std::string> metrics;
  std::vector<train::RunOptions> options;
  for (train::Arm arm : arms) {
    metrics.push_back(dir + train::arm_name(arm) + ".jsonl");
    options.push_back(train::arm_options(p->options, arm));
  }
  std::vector<std::unique_ptr<RunPrinter>> printers(arms.size());
  const train::CompareReport cmp = train::run_compare(p->options, arms, [&](int i, train::Arm arm) {
    std::cout << (i == 0 ? "" : "\n") << "== run " << i + 1 << "/" << arms.size() << ": "
              << (arm == train::Arm::kDense ? std::string("dense attention from scratch")
                                            : std::string("Lighthouse, ") + train::arm_name(arm) +
                                                  " selection (stage 1) -> dense (stage 2)")
              << " ==\n";
    printers[i] = std::make_unique<RunPrinter>(options[i], metrics[i], a.quiet);
    return printers[i]->hooks();
  });

  print_comparison(cmp, p->options.device.kind == "cpu");
  const std::string json = dir + "compare.json", svg = dir + "compare.svg";
  write_text_atomically(json, comparison_json(cmp));
  std::vector<RunCurves> curves;
  for (std::size_t i = 0; i < arms.size(); ++i)
    curves.push_back({train::arm_name(arms[i]), metrics[i]});
  write_text_atomically(svg, plot_runs_svg(curves));
  std::cout << "metrics:";
  for (const std::string& m : metrics) std::cout << " " << m;
  std::cout << "\ntable: " << json << "\nplot: " << svg << "\n";
  return kExitOk;
}

// The presets' lines for --help.
std::string presets_help() {
  std::string out =
      "Presets (--preset NAME; flags given on the command line or in --config override them):\n";
  for (const train::Preset& p : train::presets()) {
    out += "  " + pad_right(p.name, 12) + p.summary + "\n";
  }
  return out;
}

// Sets every flag of the preset that neither the command line nor --config gave.
void apply_preset(CLI::App& app, TrainArgs& args) {
  const train::Preset* preset = train::find_preset(args.preset);
  if (preset == nullptr) reject("--preset", args.preset, "must be one of " + train::preset_names());
  for (const auto& [flag, value] : preset->flags) {
    CLI::Option* opt = app.get_option("--" + flag);
    if (opt->count() > 0) continue;
    opt->add_result(value);
    opt->run_callback();
    args.preset_flags.push_back(flag);
  }
}

}  // namespace

Command add_train_command(CLI::App& parent) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* app = parent.add_subcommand(
      "train", "Train a byte-level LM: Lighthouse attention (stage 1), then dense (stage 2)");
  app->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app->footer(
      "Stage 1 uses Lighthouse attention in every layer except --dense-layers (default: the first\n"
      "two and last two when there are >= 6 layers, the last one with 3 to 5); stage 2\n"
      "continues dense from the same weights, AdamW state and learning-rate schedule. Held-out\n"
      "evaluation is always dense. Without --data the built-in corpus is generated: documents\n"
      "about --seq/2 bytes long whose facts, set near the top, are queried in the second half\n"
      "(--corpus facts), or whose facts are queried at every distance in a format a small model\n"
      "learns to retrieve from (--corpus recall, the GPU main job's).\n"
      "The defaults are the main job: `lighthouse train --compare` in a few minutes on 2 cores.\n"
      "\n"
      "Devices: the same flags, metrics, evaluations, probes, checkpoints and --compare on both.\n"
      "The CPU trains in float32 and is deterministic on one machine and build (the same bits\n"
      "on every run and for any --threads; another CPU model may differ in the last bits). On the\n"
      "GPU, a run is bit-reproducible (and --resume continues it bit for bit) with\n"
      "--deterministic on, on the same GPU model and build, with any --precision and --recompute;\n"
      "--deterministic off uses cuDNN's fast attention backward, whose atomics change the last\n"
      "bits from run to run. auto: on when the deterministic backward's workspace (about\n"
      "2*batch*heads*seq^2 bytes for a dense layer) fits in a quarter of the GPU's memory.\n"
      "Checkpoints are float32 safetensors on every device: a run saved on the GPU resumes on\n"
      "the CPU and the other way round.\n"
      "\n"
      "Context parallelism (--cp W): every sequence is cut into 2W chunks and rank r trains on\n"
      "chunks r and 2W-1-r (embeddings, norms, MLP, LM head and loss on its tokens; attention,\n"
      "dense or Lighthouse, through the library's CP); the weight gradients are summed over the\n"
      "ranks before the optimizer, so the weights stay the same on every rank. CPU: the W ranks\n"
      "are threads of this process; the losses equal --cp 0's to float32 rounding (the first\n"
      "step's bit for bit with >= 1024 token rows per rank). GPU: one process per GPU under\n"
      "torchrun (RANK, WORLD_SIZE, LOCAL_RANK; NCCL's id goes through\n"
      "LIGHTHOUSE_NCCL_ID_FILE, default a file in /tmp), e.g. torchrun --nproc-per-node 2\n"
      "lighthouse train --device cuda --cp 2 .... Data parallelism: WORLD_SIZE = D*W runs D\n"
      "groups of W consecutive ranks (W must divide WORLD_SIZE); group g trains on sequences\n"
      "g, g+D, g+2D, ... of each micro-batch of D*batch sequences, the gradients are summed\n"
      "over all D*W ranks and the loss is the groups' mean: the run of one group with\n"
      "--batch D*batch, to float32 rounding (tokens/s and MFU are one group's). Rules: --seq "
      "divisible by 2W, --heads by W, whole tiles per chunk\n"
      "(topk/128 divisible by 2W), --selection original, --scorer norm, --kv-heads 0; not with\n"
      "--compare. Rank 0 prints, writes --metrics and the checkpoints, which do not depend on W\n"
      "or D (resume with any --cp and WORLD_SIZE; the data position is that of the D*batch run).\n"
      "\n"
      "Each step reports tokens/s, MFU two ways (executed FLOPs: Lighthouse layers at their\n"
      "gathered length S; dense-equivalent: every layer dense at N; matmuls counted from their\n"
      "shapes, recomputation not counted) against the peak (GPU: its bf16 or fp32 datasheet\n"
      "peak, e.g. 989.4 TFLOP/s bf16 on H100 SXM and H200; CPU: the SGEMM measured at the\n"
      "start; --peak-tflops overrides), peak memory (GPU: device; CPU: the process's RSS) and\n"
      "the split of the step between dense attention, Lighthouse attention, matmuls and the\n"
      "rest.\n"
      "\n" +
      presets_help());
  auto opt = [&](const char* name, std::string& value, const std::string& help, const char* type) {
    app->add_option(name, value, help)->capture_default_str()->type_name(type);
  };
  opt("--preset", args->preset,
      "start from a named model and configuration (listed below): " + train::preset_names(),
      "NAME");
  opt("--device", args->device,
      "cpu, cuda, or auto (the GPU when this build has CUDA and a GPU is present)", "DEV");
  opt("--precision", args->precision,
      "cuda: bf16 (bf16 activations and products, fp32 master weights) or fp32 (everything "
      "float32, for tests); auto = bf16 on the GPU, fp32 on the CPU (always)",
      "P");
  opt("--recompute", args->recompute,
      "cuda: what backward recomputes instead of keeping: none, attention (each attention "
      "layer) or layer (every layer from its input: the least memory)",
      "R");
  opt("--deterministic", args->deterministic,
      "cuda: on (cuDNN's deterministic attention backward: bit-reproducible runs), off (its "
      "fast one) or auto (see below)",
      "D");
  opt("--peak-tflops", args->peak_tflops,
      "the peak TFLOP/s MFU is measured against (0 = the GPU's datasheet peak, or the CPU's "
      "SGEMM)",
      "T");
  opt("--stage1-steps", args->stage1_steps, "optimizer steps with Lighthouse attention", "S1");
  opt("--stage2-steps", args->stage2_steps, "optimizer steps with dense attention", "S2");
  opt("--levels", args->levels, "Lighthouse pyramid levels L (stage 1)", "L");
  opt("--pool", args->pool, "Lighthouse pooling factor p (stage 1)", "P");
  opt("--topk", args->topk, "Lighthouse top-k budget K (stage 1)", "K");
  opt("--selection", args->selection,
      "Lighthouse selection (stage 1): causal (the trainer's default), original (the "
      "original's rule, which leaks the future: issue 11) or stride (the content-free control: "
      "evenly spaced blocks refined, no scores read)",
      "MODE");
  add_scorer_flags(app, args->scorer);
  opt("--dense-layers", args->dense_layers,
      "layers kept dense in stage 1: default, none or a list like 0,1,4,5", "LIST");
  opt("--dim", args->dim, "model width", "C");
  opt("--layers", args->layers, "decoder layers", "L");
  opt("--heads", args->heads, "attention heads (dim / heads must be even)", "H");
  opt("--kv-heads", args->kv_heads,
      "heads of k and v (grouped-query attention; a divisor of --heads; 0 = --heads; CPU model)",
      "HKV");
  opt("--hidden", args->hidden, "SwiGLU width, 0 = about 8/3 * dim", "F");
  opt("--init-std", args->init_std,
      "standard deviation of the initial weights (output projections: / sqrt(2 * layers))", "S");
  app->add_flag("--untied", args->untied, "separate LM head instead of the embedding's transpose");
  app->add_flag("--pack-documents", args->pack_documents,
                "attention never crosses a document boundary (the corpus' documents, one per "
                "--data file): every layer, dense or Lighthouse, attends within each document "
                "(the library's cu_seqlens); CPU and CUDA models, not with --cp");
  opt("--seq", args->seq, "sequence length (64k = 65536)", "N");
  opt("--batch", args->batch, "sequences per micro-batch", "B");
  opt("--accum", args->accum, "micro-batches per optimizer step (gradient accumulation)", "A");
  opt("--lr", args->lr, "peak learning rate", "LR");
  opt("--min-lr-ratio", args->min_lr_ratio, "final learning rate as a fraction of --lr", "R");
  opt("--warmup", args->warmup, "linear warmup steps", "W");
  opt("--decay", args->decay,
      "cosine, linear, constant or wsd (the peak until the last --cooldown share, then linear) "
      "after the warmup",
      "KIND");
  opt("--cooldown", args->cooldown, "--decay wsd: the share of all steps spent decaying", "F");
  opt("--weight-decay", args->weight_decay, "AdamW decay of the weight matrices", "WD");
  opt("--beta1", args->beta1, "AdamW beta1", "B1");
  opt("--beta2", args->beta2, "AdamW beta2", "B2");
  opt("--grad-clip", args->grad_clip, "global gradient-norm limit, 0 = none", "G");
  opt("--seed", args->seed, "seed of the weights and the built-in corpus", "S");
  opt("--eval-every", args->eval_every,
      "held-out evaluation every M steps (and at the end of each stage), 0 = stage ends only", "M");
  opt("--eval-batches", args->eval_batches, "held-out micro-batches per evaluation", "E");
  app->add_option("--data", args->data, "text file(s) to train on, as bytes (default: built-in)")
      ->type_name("FILE")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  opt("--corpus-tokens", args->corpus_tokens, "size of the built-in corpus", "T");
  opt("--doc-bytes", args->doc_bytes, "built-in document length, 0 = --seq / 2", "D");
  opt("--doc-bytes-min", args->doc_bytes_min,
      "0: every built-in document is --doc-bytes long; else lengths drawn log-uniformly between "
      "this and --doc-bytes (with --pack-documents, short documents attend over few tokens)",
      "D");
  opt("--far-queries", args->far_queries,
      "recall corpus: the share of documents (0 to 1) that also hold 8 facts, each written once at "
      "a random depth and asked only at their end (the other facts are asked again and again, so "
      "their keys were mostly written a few lines back): long-range retrieval to learn",
      "F");
  opt("--corpus", args->corpus,
      "built-in corpus: facts (facts set at the top, asked in the second half) or recall (keys "
      "in upper case, \"set KQV5832.\" ... \"ask KQV5832.\", queries at every distance: "
      "retrieval a model learns in a few thousand steps); the passkey probe uses its format",
      "KIND");
  opt("--heldout", args->heldout, "fraction of the data held out for evaluation", "F");
  app->add_option("--metrics", args->metrics, "write metrics as JSON lines")->type_name("FILE");
  opt("--threads", args->threads, "CPU worker threads (attention, matmuls, layers), 0 = all", "T");
  opt("--cp", args->cp,
      "context parallelism: W ranks per sequence, each on its two chunks (see below); 0 = none",
      "W");
  opt("--sgemm-size", args->sgemm_size,
      "CPU: n of the SGEMM measured at the start, the peak of MFU (0 = skip)", "n");
  app->add_option("--save", args->save, "write checkpoints under DIR (step-NNNNNNNN folders)")
      ->type_name("DIR");
  opt("--save-every", args->save_every, "checkpoint every M steps (and at the end), 0 = end only",
      "M");
  app->add_flag("--save-initial", args->save_initial,
                "also checkpoint the initial weights (step-00000000) before the first step: "
                "what `python -m lighthouse_attention.twin` starts from");
  app->add_option("--resume", args->resume,
                  "continue bit-exactly from a checkpoint folder, or the latest under DIR; the "
                  "model, data and --seq/--batch/--accum/--stage1-steps must match (the device "
                  "need not)")
      ->type_name("DIR");
  app->add_option("--init-from", args->init_from,
                  "start from the weights of a checkpoint folder (or the latest under DIR) with a "
                  "fresh optimizer, step 0 and this run's own --seq/--batch/schedule: e.g. a "
                  "model trained at a short context continued at a long one, or every --compare "
                  "arm from one warm start; the model's shape must match")
      ->type_name("DIR");
  app->add_option("--dump-batches", args->dump_batches,
                  "write every step's token batches to FILE (.npy, int32 [steps, accum, 2, "
                  "batch, seq]: inputs, targets) for the PyTorch twin")
      ->type_name("FILE");
  app->add_flag("--leak-probe", args->leak_probe,
                "at the end of stage 1 (or on the --resume checkpoint), compare the loss at t with "
                "the real input vs random bytes after t, under the stage-1 attention");
  opt("--leak-samples", args->leak_samples, "positions sampled by the leak probe", "S");
  opt("--passkey-trials", args->passkey_trials,
      "passkey instances per (length, depth) at the end, 0 = skip", "T");
  opt("--passkey-lengths", args->passkey_lengths,
      "passkey context lengths, auto = seq/4,seq/2,seq (each >= 64)", "LIST");
  app->add_flag(
      "--compare", args->compare,
      "train each of --arms with the same seed, data, schedule and tokens: dense from scratch "
      "for S1 + S2 steps, Lighthouse -> dense (S1, S2) with each selection rule (--selection is "
      "the arm's); print them side by side and plot them");
  opt("--arms", args->arms,
      "--compare's recipes, in order: a list of dense, original, causal, stride", "LIST");
  opt("--compare-dir", args->compare_dir,
      "where --compare writes ARM.jsonl per arm, compare.json (the table) and compare.svg", "DIR");
  app->add_flag("--quiet", args->quiet, "no progress on stderr");
  app->add_flag("--dry-run", args->dry_run,
                "check the flags, print the run's configuration (the metrics' config record, one "
                "JSON line) and the FLOPs of a step, and exit: no data, no model, no files");
  app->add_option("--config", args->config,
                  "JSON object of flag: value (keys are the flag names without dashes); flags on "
                  "the command line override it, unknown keys are errors")
      ->type_name("FILE");
  return {app, [args, app] {
            if (!args->config.empty()) apply_json_config(*app, args->config);
            if (!args->preset.empty()) apply_preset(*app, *args);
            try {
              if (args->dry_run) return run_dry(*args);
              return args->compare ? run_compare(*args) : run_train(*args);
            } catch (const train::OutOfDeviceMemory& e) {
              // The run asked for more than the device has: bad input, not a failure.
              std::string message = e.what();
              std::replace(message.begin(), message.end(), '\n', ' ');
              std::cerr << "lighthouse train: error: " << message << "\n";
              return kExitUsage;
            }
          }};
}

}  // namespace lighthouse::cli
