// One training run of the two-stage recipe, on whatever device the model runs on: the loop that
// `lighthouse train` drives. It builds the model (through a factory, so the same loop trains the
// CPU and the CUDA model), resumes from a checkpoint, trains step by step while measuring each
// step (tokens/s, MFU, the split of the step's time, peak memory), evaluates on the held-out data
// at a fixed cadence and at the end of each stage, runs the leak probe at the end of stage 1,
// writes checkpoints, and at the end runs the passkey evaluation and sums up each stage.
//
// Nothing here prints: the caller gets every metrics record (JSON text, one object) and every
// event through RunHooks, and the whole run as a RunReport.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "train/data.hpp"
#include "train/flops.hpp"
#include "train/language_model.hpp"
#include "train/probes.hpp"
#include "train/trainer.hpp"

namespace lighthouse::train {

// The rate MFU is measured against.
struct PeakRate {
  double flops = 0;    // FLOP/s
  std::string source;  // "H100 bf16 dense peak", "SGEMM 1024^3 (OpenBLAS), this run", ...
  bool sgemm = false;  // measured on this CPU (the summary then reports "of SGEMM")
};

// How the run's device was set up, for the metrics' config record.
struct DeviceSetup {
  std::string kind = "cpu";  // "cpu" or "cuda"
  std::string name;          // the GPU's name, "" on the CPU
  std::string precision = "fp32", recompute = "none";
  bool deterministic = true;
};

struct RunOptions {
  TrainConfig config;
  // Builds the model for `config` (config.model, config.seed, config.adamw); called once.
  std::function<std::unique_ptr<LanguageModel>(const TrainConfig&)> make_model;
  const TokenStream* train = nullptr;
  const TokenStream* heldout = nullptr;
  std::vector<std::string> data_files;     // for the config record; empty: the built-in corpus
  CorpusKind corpus = CorpusKind::kFacts;  // the built-in corpus's kind; also the passkey's format
  double far_queries = 0;                  // the built-in recall corpus's far-query share (record)
  DeviceSetup device;
  std::optional<PeakRate> peak;  // none: MFU is not reported

  std::int64_t eval_every = 25;  // and at the end of each stage; 0 = stage ends only
  std::string save;              // checkpoint root; "" = no checkpoints
  std::int64_t save_every = 0;   // and at the end; 0 = the end only
  bool save_initial = false;     // also a checkpoint before the first step (a fresh run only)
  std::string resume;            // checkpoint folder or root; "" = from scratch
  // Start from a checkpoint's weights only (load_weights): a fresh optimizer, step 0 and this
  // run's own seq, batch and schedule (a short-context model continued at a longer context;
  // every --compare arm from one warm start). Folder or root; "" = the seed's initial weights.
  std::string init_from;
  bool leak_probe = false;  // at the end of stage 1, and on a resumed checkpoint
  int leak_samples = 32;
  int passkey_trials = 2;  // 0 = no passkey evaluation
  std::vector<std::int64_t> passkey_lengths;
  // A .npy of every step's token batches, int32 [steps, accum, 2 (inputs, targets), batch, seq],
  // for another implementation of the model to train on the same data; "" = none.
  std::string dump_batches;

  // Context parallelism over config.cp = W ranks (LanguageModel::set_context_parallel). `comm`
  // null and W > 1: the W ranks run here, as threads with the in-process communicator (the
  // CPU); `comm` set (its size() == W): this process is its rank (one process per GPU, NCCL).
  // Rank 0 alone calls the hooks, writes the checkpoints and the batch dump; every rank trains,
  // evaluates and probes alike.
  Communicator* comm = nullptr;
  // Data parallelism over config.dp = D groups of W ranks (TrainConfig::dp): with `comm` (this
  // rank's group), the communicator of all D * W ranks, in groups of W consecutive ranks; it
  // sums the gradients and averages the losses; its rank 0 alone reports. Null with D > 1 and
  // no comm: the D * W ranks run here as threads (the CPU).
  Communicator* world = nullptr;
};

// Once the model is built (and restored from --resume).
struct RunStart {
  std::int64_t parameters = 0;
  std::int64_t train_tokens = 0, heldout_tokens = 0;
  std::int64_t total_steps = 0;
  std::int64_t resumed_from = 0;   // the checkpoint's step; 0 for a fresh run
  std::string resumed_folder;      // "" for a fresh run
  std::string init_folder;         // the --init-from checkpoint folder; "" for none
  double unigram = 0, bigram = 0;  // count-model losses on the held-out data
};

struct StepMetrics {
  StepResult result;
  WorkTimes times;                                  // the step's time by kind of work
  StepFlops flops;                                  // the whole step (every micro-batch)
  std::optional<double> mfu, mfu_dense_equivalent;  // fractions of the peak rate
  std::int64_t peak_memory_bytes = -1;  // the device's peak during the step; else the host's RSS
  bool device_memory = false;
  double elapsed = 0;  // seconds since the run started
};

// Totals of one stage, over its training steps only (not evaluations).
struct StageTotals {
  std::int64_t steps = 0, tokens = 0;
  double seconds = 0;
  WorkTimes times;
  StepFlops flops;
  std::int64_t peak_memory_bytes = -1;
  double last_loss = 0;
  double tokens_per_second() const {
    return seconds > 0 ? static_cast<double>(tokens) / seconds : 0;
  }
};

struct RunReport {
  RunStart start;
  StageTotals stages[2];
  std::vector<std::pair<std::int64_t, double>> losses;  // (step, training loss)
  std::vector<std::pair<std::int64_t, EvalResult>> evals;
  std::optional<LeakProbeResult> leak;
  std::int64_t leak_step = 0;
  std::optional<PasskeyReport> passkey;
  std::optional<PeakRate> peak;
  double wall_seconds = 0;  // training and evaluations, not the final passkey
};

// The passkey report as the metrics' summary, compare.json and scripts/study-report read it:
// accuracy, mean -log p(digit), and per (length, depth) cell the same.
nlohmann::json passkey_json(const PasskeyReport& pk);
// An evaluation's first-digit loss by distance class: [{"from", "to" (null: no bound), "loss"
// (null: none in the class), "tokens"}, ...]; null when the held-out data has no answers.
nlohmann::json recall_distance_json(const EvalResult& e);

struct RunHooks {
  std::function<void(const std::string& json)> record;  // each metrics record, in order
  std::function<void(const RunStart&)> started;
  std::function<void(const StepMetrics&)> step;
  std::function<void(std::int64_t step, const EvalResult&)> evaluated;
  std::function<void(std::int64_t step, const LeakProbeResult&)> leak_probe;
  std::function<void(std::int64_t step, const std::string& folder)> saved;
  std::function<void(const RunReport&)> finished;  // the whole run, before run_training returns
};

// The metrics' first record (type "config"): the model, the recipe, the data and the device.
std::string config_record_json(const RunOptions& options, std::int64_t parameters);

// Throws InvalidArgument for inconsistent options (save_every without save, ...), CheckpointError
// for an unusable --resume checkpoint, and whatever the model throws (OutOfDeviceMemory, ...).
// With context or data parallelism the report is rank 0's (every rank's losses are the same
// numbers: with D groups, the mean of the groups'; tokens, times and MFU are one group's).
RunReport run_training(const RunOptions& options, const RunHooks& hooks = {});

// The token batches of steps [0, steps) of a run, as RunOptions::dump_batches writes them.
void write_batches(const std::string& path, const TrainConfig& config, const TokenStream& train,
                   std::int64_t steps);

}  // namespace lighthouse::train
