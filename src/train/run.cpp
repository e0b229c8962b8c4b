#include "train/run.hpp"

#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>

#include <nlohmann/json.hpp>

#include "lighthouse/communicator.hpp"
#include "lighthouse/error.hpp"
#include "lighthouse/npy.hpp"
#include "train/checkpoint.hpp"

namespace lighthouse::train {

namespace {

// Passkey depths: 10..90% of the filler (issue 13), the needle never at either edge, where a
// model that only reads the start or the end of its context would score.
const std::vector<double> kPasskeyDepths{0.1, 0.3, 0.5, 0.7, 0.9};

using Clock = std::chrono::steady_clock;

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The process's peak resident set size so far (what a CPU run reports as its memory).
std::int64_t peak_rss_bytes() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return -1;
  return static_cast<std::int64_t>(usage.ru_maxrss) * 1024;  // kilobytes on Linux
}

const char* decay_name(Decay d) {
  switch (d) {
    case Decay::kCosine:
      return "cosine";
    case Decay::kLinear:
      return "linear";
    case Decay::kConstant:
      return "constant";
    case Decay::kWsd:
      return "wsd";
  }
  return "?";
}

nlohmann::json config_record(const RunOptions& o, std::int64_t parameters) {
  const TrainConfig& c = o.config;
  nlohmann::json dense = c.dense_layers ? nlohmann::json(*c.dense_layers) : nlohmann::json();
  nlohmann::json j = {{"type", "config"},
                      {"model",
                       {{"dim", c.model.dim},
                        {"layers", c.model.layers},
                        {"heads", c.model.heads},
                        {"kv_heads", c.model.kv_head_count()},
                        {"hidden", c.model.ffn()},
                        {"init_std", c.model.init_std},
                        {"tied", c.model.tied},
                        {"vocab", c.model.vocab},
                        {"pack_documents", c.model.pack_documents},
                        {"parameters", parameters}}},
                      {"seq", c.seq},
                      {"batch", c.batch},
                      {"accum", c.accum},
                      {"stage1_steps", c.stage1_steps},
                      {"stage2_steps", c.stage2_steps},
                      {"lighthouse",
                       {{"levels", c.lighthouse.levels},
                        {"pool", c.lighthouse.pool},
                        {"topk", c.lighthouse.topk},
                        {"selection", selection_name(c.lighthouse.selection)},
                        {"scorer", scorer_name(c.lighthouse.scorer)},
                        {"dilation", c.lighthouse.dilation}}},
                      {"dense_layers", dense},
                      {"lr", c.schedule.lr},
                      {"min_lr_ratio", c.schedule.min_ratio},
                      {"warmup", c.schedule.warmup},
                      {"decay", decay_name(c.schedule.decay)},
                      {"cooldown", c.schedule.cooldown},
                      {"weight_decay", c.adamw.weight_decay},
                      {"betas", {c.adamw.beta1, c.adamw.beta2}},
                      {"eps", c.adamw.eps},
                      {"grad_clip", c.grad_clip},
                      {"seed", c.seed},
                      {"cp", c.cp},
                      {"dp", c.dp},
                      {"data", o.data_files.empty() ? nlohmann::json(std::string("built-in ") +
                                                                     corpus_kind_name(o.corpus))
                                                    : nlohmann::json(o.data_files)},
                      {"far_queries", o.far_queries},
                      {"device",
                       {{"kind", o.device.kind},
                        {"name", o.device.name},
                        {"precision", o.device.precision},
                        {"recompute", o.device.recompute},
                        {"deterministic", o.device.deterministic}}}};
  if (o.peak) j["peak"] = {{"tflops", o.peak->flops / 1e12}, {"source", o.peak->source}};
  return j;
}

nlohmann::json eval_record(std::int64_t step, int stage, const EvalResult& e) {
  nlohmann::json j = {
      {"type", "eval"}, {"step", step}, {"stage", stage}, {"dense_loss", e.dense_loss}};
  if (e.train_attention_loss) j["train_attention_loss"] = *e.train_attention_loss;
  if (e.recall_loss) j["recall_loss"] = *e.recall_loss, j["recall_tokens"] = e.recall_tokens;
  if (e.recall_first_loss) {
    j["recall_first_loss"] = *e.recall_first_loss;
    j["recall_first_by_distance"] = recall_distance_json(e);
  }
  return j;
}

nlohmann::json leak_record(std::int64_t step, const LeakProbeResult& r) {
  return {{"type", "leak_probe"},
          {"step", step},
          {"samples", r.samples.size()},
          {"mean_real", r.mean_real},
          {"mean_corrupt", r.mean_corrupt},
          {"mean_diff", r.mean_diff},
          {"ci95", r.ci95}};
}

nlohmann::json split_json(const WorkTimes& t) {
  return {{"dense_attention", t.dense_attention},
          {"lighthouse_attention", t.lighthouse_attention},
          {"matmul", t.matmul},
          {"other", t.other}};
}

nlohmann::json optional_json(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json();
}

nlohmann::json step_record(const StepMetrics& m) {
  const StepResult& r = m.result;
  return {{"type", "step"},
          {"step", r.step},
          {"stage", r.stage},
          {"loss", r.loss},
          {"lr", r.lr},
          {"grad_norm", r.grad_norm},
          {"tokens", r.tokens},
          {"seconds", r.seconds},
          {"ms", 1e3 * r.seconds},
          {"tok_per_s", static_cast<double>(r.tokens) / r.seconds},
          {"tflops",
           {{"executed", m.flops.executed() / r.seconds / 1e12},
            {"dense_equivalent", m.flops.dense_equivalent() / r.seconds / 1e12}}},
          {"mfu",
           {{"executed", optional_json(m.mfu)},
            {"dense_equivalent", optional_json(m.mfu_dense_equivalent)}}},
          {"peak_memory_bytes", m.peak_memory_bytes},
          {"memory", m.device_memory ? "device" : "host_rss"},
          {"split_seconds", split_json(m.times)},
          {"elapsed", m.elapsed}};
}

nlohmann::json stage_summary(const StageTotals& t, const std::optional<PeakRate>& peak) {
  const double gflops = t.times.matmul > 0 ? t.flops.matmul / t.times.matmul / 1e9 : 0;
  nlohmann::json j = {{"steps", t.steps},
                      {"tokens", t.tokens},
                      {"seconds", t.seconds},
                      {"tok_per_s", t.tokens_per_second()},
                      {"matmul_fraction", t.times.matmul / t.seconds},
                      {"matmul_gflops", gflops},
                      {"attention_fraction",
                       {{"dense", t.times.dense_attention / t.seconds},
                        {"lighthouse", t.times.lighthouse_attention / t.seconds}}},
                      {"split_seconds", split_json(t.times)},
                      {"tflops",
                       {{"executed", t.flops.executed() / t.seconds / 1e12},
                        {"dense_equivalent", t.flops.dense_equivalent() / t.seconds / 1e12}}},
                      {"peak_memory_bytes", t.peak_memory_bytes},
                      {"last_train_loss", t.last_loss}};
  if (peak) {
    j["mfu"] = {{"executed", t.flops.executed() / t.seconds / peak->flops},
                {"dense_equivalent", t.flops.dense_equivalent() / t.seconds / peak->flops}};
    j[peak->sgemm ? "matmul_of_sgemm" : "matmul_of_peak"] = gflops * 1e9 / peak->flops;
  }
  return j;
}

void check(const RunOptions& o) {
  if (!o.make_model) throw Error("run_training: no model factory");
  if (o.train == nullptr || o.heldout == nullptr) throw Error("run_training: no data");
  if (o.eval_every < 0) {
    throw InvalidArgument("eval_every", std::to_string(o.eval_every), "must be >= 0");
  }
  if (o.save_every < 0) {
    throw InvalidArgument("save_every", std::to_string(o.save_every), "must be >= 0");
  }
  if ((o.save_every > 0 || o.save_initial) && o.save.empty()) {
    throw InvalidArgument(o.save_every > 0 ? "save_every" : "save_initial",
                          o.save_every > 0 ? std::to_string(o.save_every) : "true",
                          "needs --save DIR (where the checkpoints go)");
  }
  if (!o.init_from.empty() && !o.resume.empty()) {
    throw InvalidArgument("init_from", o.init_from,
                          "cannot be combined with --resume (which restores the whole run)");
  }
  if (o.leak_samples < 2) {
    throw InvalidArgument("leak_samples", std::to_string(o.leak_samples), "must be >= 2");
  }
  for (std::int64_t n : o.passkey_lengths) {
    if (n < 64) throw InvalidArgument("passkey_lengths", std::to_string(n), "each must be >= 64");
  }
  if (o.peak && !(o.peak->flops > 0)) {
    throw InvalidArgument("peak", std::to_string(o.peak->flops), "must be > 0 FLOP/s");
  }
  if (o.comm && o.comm->size() != o.config.cp) {
    throw InvalidArgument(
        "cp", std::to_string(o.config.cp),
        "must equal the communicator's size (" + std::to_string(o.comm->size()) + " ranks)");
  }
  if (o.world && !o.comm) {
    throw InvalidArgument("world", "set", "needs comm (this rank's context-parallel group)");
  }
  if (o.world && o.world->size() != o.config.dp * o.config.cp) {
    throw InvalidArgument("dp", std::to_string(o.config.dp),
                          "dp * cp must equal the world communicator's size (" +
                              std::to_string(o.world->size()) + " ranks)");
  }
  if (o.comm && !o.world && o.config.dp > 1) {
    throw InvalidArgument("dp", std::to_string(o.config.dp),
                          "needs RunOptions::world (every group's ranks) with comm");
  }
}

}  // namespace

std::string config_record_json(const RunOptions& options, std::int64_t parameters) {
  return config_record(options, parameters).dump();
}

void write_batches(const std::string& path, const TrainConfig& config, const TokenStream& train,
                   std::int64_t steps) {
  const std::int64_t batch = config.batch, seq = config.seq, accum = config.accum;
  const std::int64_t tokens = batch * seq;
  std::vector<std::int32_t> data(static_cast<std::size_t>(steps * accum * 2 * tokens));
  // The trainer draws every micro-batch from one Packer, starting at position 0 (a resumed run
  // continues at the checkpoint's position, which is where this sequence is at its step).
  Packer packer(&train, seq);
  for (std::int64_t m = 0; m < steps * accum; ++m) {
    std::int32_t* at = data.data() + m * 2 * tokens;
    packer.next(batch, at, at + tokens);
  }
  write_npy(path, DType::kInt32, {steps, accum, 2, batch, seq}, data.data());
}

namespace {

// One rank's run (the whole run without context parallelism).
RunReport run_rank(const RunOptions& o, const RunHooks& hooks) {
  const TrainConfig& config = o.config;
  const bool lead =
      o.world != nullptr ? o.world->rank() == 0 : o.comm == nullptr || o.comm->rank() == 0;
  auto record = [&](const nlohmann::json& j) {
    if (hooks.record) hooks.record(j.dump());
  };

  Trainer trainer(config, o.train, o.heldout, o.make_model(config));
  LanguageModel& model = trainer.model();
  if (o.comm) model.set_context_parallel(o.comm);
  if (o.world) trainer.set_data_parallel(o.world->rank() / config.cp, o.world);
  RunReport report;
  report.peak = o.peak;
  RunStart& start = report.start;
  start.parameters = model.parameter_count();
  start.train_tokens = static_cast<std::int64_t>(o.train->size());
  start.heldout_tokens = static_cast<std::int64_t>(o.heldout->size());
  start.total_steps = trainer.total_steps();
  if (!o.resume.empty()) {
    start.resumed_folder = resolve_checkpoint(o.resume);
    start.resumed_from = load_checkpoint(trainer, start.resumed_folder);
  }
  if (!o.init_from.empty()) {
    start.init_folder = resolve_checkpoint(o.init_from);
    load_weights(model, config.model, start.init_folder);
  }
  if (lead && !o.dump_batches.empty()) {
    // Data parallelism: the whole world's batches (D * batch sequences, one group's run's).
    TrainConfig whole = config;
    whole.batch *= config.dp;
    write_batches(o.dump_batches, whole, *o.train, start.total_steps);
  }
  // What a model without attention reaches: the trained model's loss is read against these.
  start.unigram = ngram_cross_entropy(*o.train, *o.heldout, 0);
  start.bigram = ngram_cross_entropy(*o.train, *o.heldout, 1);
  nlohmann::json config_line = config_record(o, start.parameters);
  config_line["baselines"] = {{"unigram", start.unigram}, {"bigram", start.bigram}};
  if (!o.resume.empty()) config_line["resumed_from"] = start.resumed_from;
  if (!o.init_from.empty()) config_line["init_from"] = start.init_folder;
  record(config_line);
  if (hooks.started) hooks.started(start);

  auto save = [&] {
    if (!lead) return;  // the weights are the same on every rank
    const std::string folder = save_checkpoint(trainer, o.save);
    if (hooks.saved) hooks.saved(trainer.step_count(), folder);
  };
  auto leak_probe = [&] {
    report.leak = train::leak_probe(model, trainer.stage1_attention(), trainer.heldout(),
                                    config.seq, o.leak_samples, trainer.rng());
    report.leak_step = trainer.step_count();
    record(leak_record(report.leak_step, *report.leak));
    if (hooks.leak_probe) hooks.leak_probe(report.leak_step, *report.leak);
  };
  auto evaluate = [&] {
    const EvalResult e = trainer.evaluate();
    const std::int64_t step = trainer.step_count();
    report.evals.emplace_back(step, e);
    record(eval_record(step, step <= config.stage1_steps ? 1 : 2, e));
    if (hooks.evaluated) hooks.evaluated(step, e);
  };

  if (o.leak_probe && !o.resume.empty()) leak_probe();  // the probe of a checkpoint
  if (o.save_initial && o.resume.empty()) save();
  const auto run_start = Clock::now();
  while (!trainer.done()) {
    model.take_times();  // evaluations and checkpoints between steps are not the step's
    (void)model.take_peak_memory();
    StepMetrics m;
    const std::vector<Config> attention =
        trainer.stage() == 1 ? trainer.stage1_attention() : all_dense(config.model.layers);
    m.result = trainer.step();
    m.times = model.take_times();
    m.peak_memory_bytes = model.take_peak_memory();
    m.device_memory = m.peak_memory_bytes >= 0;
    if (!m.device_memory) m.peak_memory_bytes = peak_rss_bytes();
    const StepResult& r = m.result;
    m.flops = training_flops(config.model, attention, config.batch, config.seq);
    m.flops.matmul *= static_cast<double>(config.accum);
    m.flops.attention *= static_cast<double>(config.accum);
    m.flops.attention_dense_equivalent *= static_cast<double>(config.accum);
    if (o.peak) {
      m.mfu = m.flops.executed() / r.seconds / o.peak->flops;
      m.mfu_dense_equivalent = m.flops.dense_equivalent() / r.seconds / o.peak->flops;
    }
    m.elapsed = since(run_start);

    StageTotals& t = report.stages[r.stage - 1];
    ++t.steps;
    t.tokens += r.tokens;
    t.seconds += r.seconds;
    t.times.dense_attention += m.times.dense_attention;
    t.times.lighthouse_attention += m.times.lighthouse_attention;
    t.times.matmul += m.times.matmul;
    t.times.other += m.times.other;
    t.flops += m.flops;
    t.peak_memory_bytes = std::max(t.peak_memory_bytes, m.peak_memory_bytes);
    t.last_loss = r.loss;
    report.losses.emplace_back(r.step, r.loss);
    record(step_record(m));
    if (hooks.step) hooks.step(m);

    const bool stage_end = r.step == config.stage1_steps || trainer.done();
    if ((o.eval_every > 0 && r.step % o.eval_every == 0) || stage_end) evaluate();
    if (o.leak_probe && r.step == config.stage1_steps) leak_probe();
    if (!o.save.empty() && ((o.save_every > 0 && r.step % o.save_every == 0) || trainer.done())) {
      save();
    }
  }
  report.wall_seconds = since(run_start);

  nlohmann::json summary = {{"type", "summary"}, {"wall_seconds", report.wall_seconds}};
  for (int s = 0; s < 2; ++s) {
    if (report.stages[s].steps > 0) {
      summary["stage" + std::to_string(s + 1)] = stage_summary(report.stages[s], o.peak);
    }
  }
  if (o.peak) {
    if (o.peak->sgemm) summary["sgemm_gflops"] = o.peak->flops / 1e9;
    summary["peak_tflops"] = o.peak->flops / 1e12;
    summary["peak_source"] = o.peak->source;
  }
  if (!report.evals.empty()) {
    const EvalResult& last = report.evals.back().second;
    summary["final_dense_eval_loss"] = last.dense_loss;
    summary["unigram_loss"] = start.unigram;
    summary["bigram_loss"] = start.bigram;
    if (last.recall_loss) summary["final_recall_loss"] = *last.recall_loss;
    if (last.recall_first_loss) {
      summary["final_recall_first_loss"] = *last.recall_first_loss;
      summary["final_recall_first_by_distance"] = recall_distance_json(last);
    }
  }
  if (o.passkey_trials > 0 && !o.passkey_lengths.empty()) {
    report.passkey = passkey_eval(model, o.passkey_lengths, kPasskeyDepths, o.passkey_trials,
                                  config.seed, o.corpus);
    summary["passkey"] = passkey_json(*report.passkey);
  }
  if (report.leak) summary["leak_probe"] = leak_record(report.leak_step, *report.leak);
  record(summary);
  if (hooks.finished) hooks.finished(report);
  return report;
}

}  // namespace

RunReport run_training(const RunOptions& o, const RunHooks& hooks) {
  check(o);
  // One process per rank (NCCL): rank 0 (of the world, with data parallelism) reports.
  if (o.comm != nullptr) {
    const bool lead = (o.world != nullptr ? o.world : o.comm)->rank() == 0;
    return run_rank(o, lead ? hooks : RunHooks{});
  }
  const int world = o.config.cp;
  if (world == 0) return run_rank(o, hooks);
  if (o.config.dp > 1) {
    // D groups of W thread ranks: a world communicator and one per group.
    const int omp_threads =
        std::max(1, (o.config.threads > 0 ? o.config.threads : omp_get_max_threads()) /
                        (world * o.config.dp));
    RunReport report;
    run_thread_rank_groups(world * o.config.dp, world, [&](Communicator& all, Communicator& group) {
      omp_set_num_threads(omp_threads);
      RunOptions mine = o;
      mine.comm = &group;
      mine.world = &all;
      mine.config.threads = omp_threads;
      RunReport r = run_rank(mine, all.rank() == 0 ? hooks : RunHooks{});
      if (all.rank() == 0) report = std::move(r);
    });
    return report;
  }
  // The W ranks as threads of this process, sharing its OpenMP threads between them (and the
  // attention's workers: --threads 0 would give each rank every core). The results do not depend
  // on thread counts.
  const int omp_threads =
      std::max(1, (o.config.threads > 0 ? o.config.threads : omp_get_max_threads()) / world);
  RunReport report;
  run_thread_ranks(world, [&](Communicator& comm) {
    omp_set_num_threads(omp_threads);
    RunOptions mine = o;
    mine.comm = &comm;
    mine.config.threads = omp_threads;
    RunReport r = run_rank(mine, comm.rank() == 0 ? hooks : RunHooks{});
    if (comm.rank() == 0) report = std::move(r);
  });
  return report;
}

nlohmann::json recall_distance_json(const EvalResult& e) {
  if (!e.recall_first_loss) return nullptr;
  nlohmann::json classes = nlohmann::json::array();
  std::int64_t from = 0;
  for (int c = 0; c < kRecallDistanceClasses; ++c) {
    const auto i = static_cast<std::size_t>(c);
    const bool last = c + 1 == kRecallDistanceClasses;
    const std::int64_t to = last ? 0 : kRecallDistanceBounds[i];
    const auto& loss = e.recall_first_by_distance[i];
    classes.push_back({{"from", from},
                       {"to", last ? nlohmann::json(nullptr) : nlohmann::json(to)},
                       {"loss", loss ? nlohmann::json(*loss) : nlohmann::json(nullptr)},
                       {"tokens", e.recall_first_by_distance_tokens[i]}});
    from = to;
  }
  return classes;
}

nlohmann::json passkey_json(const PasskeyReport& pk) {
  nlohmann::json cells = nlohmann::json::array();
  for (const auto& c : pk.cells) {
    cells.push_back({{"length", c.length},
                     {"depth", c.depth},
                     {"correct", c.correct},
                     {"trials", c.trials},
                     {"loss", c.loss()}});
  }
  return {{"accuracy", pk.accuracy()}, {"loss", pk.loss()}, {"cells", cells}};
}

}  // namespace lighthouse::train
