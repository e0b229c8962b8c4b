// `lighthouse train`: trains the byte-level LM of src/train with the two-stage recipe --
// stage 1 with Lighthouse attention in every layer but the dense ones, stage 2 dense, on the same
// weights, optimizer state and schedule -- evaluating on held-out data with dense attention.
// Progress on stderr, one JSON object per line in --metrics, a summary table on stdout.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <omp.h>
#include <nlohmann/json.hpp>

#include "common/args.hpp"
#include "common/atomic_text.hpp"
#include "common/commands.hpp"
#include "common/format.hpp"
#include "common/json_config.hpp"
#include "common/machine.hpp"
#include "common/progress.hpp"
#include "common/scorer_flags.hpp"
#include "lighthouse/error.hpp"
#include "plot/run_plot.hpp"
#include "train/checkpoint.hpp"
#include "train/data.hpp"
#include "train/matmul.hpp"
#include "train/probes.hpp"
#include "train/trainer.hpp"

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
  std::string selection = "original";
  ScorerFlags scorer;
  std::string dim = "128", layers = "4", heads = "4", hidden = "0", init_std = "0.06";
  bool untied = false;
  std::string seq = "4096", batch = "1", accum = "1";
  std::string lr = "5e-3", min_lr_ratio = "0.1", warmup = "10", decay = "wsd", cooldown = "0.2";
  std::string weight_decay = "0.1", beta1 = "0.9", beta2 = "0.95", grad_clip = "1.0";
  std::string seed = "1", eval_every = "25", eval_batches = "2";
  std::vector<std::string> data;
  std::string corpus_tokens = "2m", doc_bytes = "0", heldout = "0.05";
  std::string metrics, threads = "0", sgemm_size = "1024";
  std::string save, save_every = "0", resume, config;
  bool leak_probe = false, compare = false;
  std::string compare_dir = "compare";
  std::string leak_samples = "32", passkey_trials = "2", passkey_lengths = "auto";
  bool quiet = false;
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
  c.model.hidden = parse_int32("--hidden", a.hidden, 0, 1 << 20);
  c.model.tied = !a.untied;
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
  if (c.stage1_steps + c.stage2_steps < 1) {
    reject("--stage2-steps", a.stage2_steps, "--stage1-steps + --stage2-steps must be >= 1");
  }
  c.validate();
  return c;
}

std::string duration_text(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s";
  return std::to_string(s / 3600) + "h" + std::to_string(s / 60 % 60) + "m";
}

std::string rate_text(double tokens_per_s) {
  return tokens_per_s >= 1000 ? fixed(tokens_per_s / 1000, 1) + "k" : fixed(tokens_per_s, 0);
}

// Totals of one stage, measured around the training steps only (not evaluation).
struct StageTotals {
  std::int64_t steps = 0, tokens = 0;
  double seconds = 0, matmul_seconds = 0, matmul_flops = 0;
  double dense_attention = 0, lighthouse_attention = 0;
  double last_loss = 0;
};

nlohmann::json config_json(const train::TrainConfig& c, const TrainArgs& a,
                           std::int64_t parameters) {
  nlohmann::json dense = c.dense_layers ? nlohmann::json(*c.dense_layers) : nlohmann::json();
  return {
      {"type", "config"},
      {"model",
       {{"dim", c.model.dim},
        {"layers", c.model.layers},
        {"heads", c.model.heads},
        {"hidden", c.model.ffn()},
        {"init_std", c.model.init_std},
        {"tied", c.model.tied},
        {"vocab", c.model.vocab},
        {"parameters", parameters}}},
      {"seq", c.seq},
      {"batch", c.batch},
      {"accum", c.accum},
      {"stage1_steps", c.stage1_steps},
      {"stage2_steps", c.stage2_steps},
      {"lighthouse",
       {{"levels", c.lighthouse.levels}, {"pool", c.lighthouse.pool}, {"topk", c.lighthouse.topk}}},
      {"dense_layers", dense},
      {"lr", c.schedule.lr},
      {"min_lr_ratio", c.schedule.min_ratio},
      {"warmup", c.schedule.warmup},
      {"decay", a.decay},
      {"cooldown", c.schedule.cooldown},
      {"weight_decay", c.adamw.weight_decay},
      {"betas", {c.adamw.beta1, c.adamw.beta2}},
      {"grad_clip", c.grad_clip},
      {"seed", c.seed},
      {"data", a.data.empty() ? nlohmann::json("built-in") : nlohmann::json(a.data)}};
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

// Runs the leak probe under the stage-1 attention, prints it and returns its JSONL record.
nlohmann::json run_leak_probe(train::Trainer& trainer, int samples) {
  const train::LeakProbeResult r =
      train::leak_probe(trainer.model(), trainer.stage1_attention(), trainer.heldout(),
                        trainer.config().seq, samples, trainer.rng());
  std::cout << "leak probe at step " << trainer.step_count() << " (" << r.samples.size()
            << " positions, stage-1 attention): loss with the real future " << fixed(r.mean_real, 4)
            << ", with random bytes after t " << fixed(r.mean_corrupt, 4) << ", difference "
            << fixed(r.mean_diff, 4) << " +- " << fixed(r.ci95, 4) << " (95% CI)\n";
  return {{"type", "leak_probe"},
          {"step", trainer.step_count()},
          {"samples", r.samples.size()},
          {"mean_real", r.mean_real},
          {"mean_corrupt", r.mean_corrupt},
          {"mean_diff", r.mean_diff},
          {"ci95", r.ci95}};
}

// What --compare needs from one run: the summary record and the per-step training losses.
struct RunReport {
  nlohmann::json summary;
  std::vector<std::pair<std::int64_t, double>> losses;  // (step, training loss)
};

int run_train(const TrainArgs& a, RunReport* report = nullptr) {
  train::TrainConfig config = build_config(a);
  const std::int64_t eval_every = parse_int("--eval-every", a.eval_every, 0, 1 << 30);
  const double heldout_fraction = parse_double("--heldout", a.heldout, 1e-6, 0.5);
  const int sgemm_size = parse_int32("--sgemm-size", a.sgemm_size, 0, 8192);
  if (!a.metrics.empty()) check_writable_path("--metrics", a.metrics);
  const std::int64_t save_every = parse_int("--save-every", a.save_every, 0, 1 << 30);
  const int leak_samples = parse_int32("--leak-samples", a.leak_samples, 2, 1 << 20);
  const int passkey_trials = parse_int32("--passkey-trials", a.passkey_trials, 0, 1 << 20);
  const std::vector<std::int64_t> passkey_lengths =
      parse_passkey_lengths(a.passkey_lengths, config.seq);
  if (save_every > 0 && a.save.empty()) {
    reject("--save-every", a.save_every, "needs --save DIR (where the checkpoints go)");
  }

  // Data: text files as bytes, or the built-in long-range corpus with documents half a sequence
  // long: a packed sequence starts anywhere in the stream, and with documents that short most
  // queries find their facts in the same window (with whole-sequence documents, about a quarter).
  train::TokenStream train_tokens, heldout_tokens;
  if (!a.data.empty()) {
    train::split_heldout(train::read_text_files(a.data), heldout_fraction, &train_tokens,
                         &heldout_tokens);
  } else {
    const std::int64_t tokens = parse_int("--corpus-tokens", a.corpus_tokens, 2, 1ll << 32);
    std::int64_t doc_bytes = parse_int("--doc-bytes", a.doc_bytes, 0, 1ll << 30);
    if (doc_bytes == 0) doc_bytes = std::max<std::int64_t>(config.seq / 2, 256);
    train::split_heldout(train::generate_corpus(tokens, config.seed, doc_bytes), heldout_fraction,
                         &train_tokens, &heldout_tokens);
  }

  // One pool of worker threads for everything (attention, matmuls, the other layers): the
  // matmuls run single-threaded BLAS inside OpenMP's workers.
  if (config.threads > 0) omp_set_num_threads(config.threads);
  std::shared_ptr<train::AttentionBackend> backend = train::make_cpu_attention(config.threads);
  train::Trainer trainer(config, &train_tokens, &heldout_tokens, backend);
  std::int64_t resumed_from = 0;
  if (!a.resume.empty()) {
    const std::string folder = train::resolve_checkpoint(a.resume);
    resumed_from = train::load_checkpoint(trainer, folder);
    std::cout << "resumed from " << folder << " at step " << resumed_from << "\n";
  }
  auto save = [&] {
    const std::string folder = train::save_checkpoint(trainer, a.save);
    return folder;
  };

  std::ofstream metrics;
  if (!a.metrics.empty()) {
    metrics.open(a.metrics, std::ios::trunc);
    if (!metrics) throw Error(a.metrics + ": cannot open for writing");
  }
  auto log = [&](const nlohmann::json& j) {
    if (metrics.is_open()) metrics << j.dump() << "\n" << std::flush;
  };
  // What a model without attention reaches: the trained model's loss is read against these.
  const double unigram = train::ngram_cross_entropy(train_tokens, heldout_tokens, 0);
  const double bigram = train::ngram_cross_entropy(train_tokens, heldout_tokens, 1);
  nlohmann::json config_line = config_json(config, a, trainer.model().parameter_count());
  config_line["lighthouse"]["selection"] = selection_name(config.lighthouse.selection);
  config_line["lighthouse"]["scorer"] = scorer_name(config.lighthouse.scorer);
  config_line["lighthouse"]["dilation"] = config.lighthouse.dilation;
  config_line["baselines"] = {{"unigram", unigram}, {"bigram", bigram}};
  if (!a.resume.empty()) config_line["resumed_from"] = resumed_from;
  log(config_line);

  std::cout << "lighthouse train: " << trainer.model().parameter_count() << " parameters, "
            << config.model.layers << " layers x " << config.model.dim << ", seq " << config.seq
            << ", " << config.batch * config.accum << " sequences/step; stage 1 "
            << config.stage1_steps << " steps (levels " << config.lighthouse.levels << ", pool "
            << config.lighthouse.pool << ", topk " << config.lighthouse.topk << "), stage 2 "
            << config.stage2_steps << " steps dense; " << train_tokens.size()
            << " training tokens, " << heldout_tokens.size() << " held-out\n"
            << std::flush;

  StageTotals stages[2];
  std::vector<std::pair<std::int64_t, train::EvalResult>> evals;
  auto evaluate = [&] {
    const train::EvalResult e = trainer.evaluate();
    evals.emplace_back(trainer.step_count(), e);
    nlohmann::json j = {{"type", "eval"},
                        {"step", trainer.step_count()},
                        {"stage", trainer.step_count() <= config.stage1_steps ? 1 : 2},
                        {"dense_loss", e.dense_loss}};
    if (e.train_attention_loss) j["train_attention_loss"] = *e.train_attention_loss;
    if (e.recall_loss) j["recall_loss"] = *e.recall_loss, j["recall_tokens"] = e.recall_tokens;
    log(j);
    return e;
  };

  nlohmann::json leak;
  if (a.leak_probe && !a.resume.empty()) {  // the probe of a checkpoint
    leak = run_leak_probe(trainer, leak_samples);
    log(leak);
  }
  Progress progress(static_cast<int>(trainer.total_steps() - resumed_from), a.quiet);
  const auto run_start = std::chrono::steady_clock::now();
  double recent = 0;  // exponential average of the step time, for the ETA
  while (!trainer.done()) {
    train::reset_matmul_stats();
    backend->reset_seconds();
    const train::StepResult r = trainer.step();
    const train::MatmulStats mm = train::matmul_stats();
    StageTotals& t = stages[r.stage - 1];
    ++t.steps;
    t.tokens += r.tokens;
    t.seconds += r.seconds;
    t.matmul_seconds += mm.seconds;
    t.matmul_flops += mm.flops;
    t.dense_attention += backend->seconds().dense;
    t.lighthouse_attention += backend->seconds().lighthouse;
    t.last_loss = r.loss;
    if (report) report->losses.emplace_back(r.step, r.loss);
    recent = recent == 0 ? r.seconds : 0.8 * recent + 0.2 * r.seconds;
    const double tok_s = static_cast<double>(r.tokens) / r.seconds;
    log({{"type", "step"},
         {"step", r.step},
         {"stage", r.stage},
         {"loss", r.loss},
         {"lr", r.lr},
         {"grad_norm", r.grad_norm},
         {"tokens", r.tokens},
         {"seconds", r.seconds},
         {"tok_per_s", tok_s},
         {"elapsed",
          std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count()}});
    progress.step("stage " + std::to_string(r.stage) + " loss " + fixed(r.loss, 4) + " " +
                  rate_text(tok_s) + " tok/s ETA " +
                  duration_text(recent * static_cast<double>(trainer.total_steps() - r.step)));
    const bool stage_end = r.step == config.stage1_steps || trainer.done();
    if ((eval_every > 0 && r.step % eval_every == 0) || stage_end) {
      const train::EvalResult e = evaluate();
      progress.note(
          "step " + std::to_string(r.step) + ": held-out loss " + fixed(e.dense_loss, 4) +
          " (dense)" +
          (e.train_attention_loss
               ? ", " + fixed(*e.train_attention_loss, 4) + " (training attention)"
               : std::string()) +
          (e.recall_loss ? "; long-range answers " + fixed(*e.recall_loss, 3) : std::string()));
    }
    if (a.leak_probe && r.step == config.stage1_steps) {
      progress.finish();
      leak = run_leak_probe(trainer, leak_samples);
      log(leak);
    }
    if (!a.save.empty() && ((save_every > 0 && r.step % save_every == 0) || trainer.done())) {
      progress.note("step " + std::to_string(r.step) + ": checkpoint " + save());
    }
  }
  progress.finish();
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();

  std::optional<double> sgemm;
  if (sgemm_size > 0) sgemm = measure_sgemm_gflops(sgemm_size, config.threads, 3);

  // Summary table: where a training step's time went (attention split into the dense layers'
  // and the Lighthouse layers'), and the matmuls' rate against the SGEMM measured just now.
  std::cout << "\nstage  attention    steps     tokens   seconds    tok/s  matmul%  attn% (dense"
               "   lh)  matmul GFLOP/s  of SGEMM  last loss\n";
  nlohmann::json summary = {{"type", "summary"}, {"wall_seconds", wall}};
  for (int s = 0; s < 2; ++s) {
    const StageTotals& t = stages[s];
    if (t.steps == 0) continue;
    const double attn = t.dense_attention + t.lighthouse_attention;
    const double gflops = t.matmul_seconds > 0 ? t.matmul_flops / t.matmul_seconds / 1e9 : 0;
    std::cout << pad_left(std::to_string(s + 1), 5) << "  "
              << pad_right(s == 0 ? "lighthouse" : "dense", 10)
              << pad_left(std::to_string(t.steps), 8) << pad_left(std::to_string(t.tokens), 11)
              << pad_left(fixed(t.seconds, 1), 10)
              << pad_left(rate_text(static_cast<double>(t.tokens) / t.seconds), 9)
              << pad_left(fixed(100 * t.matmul_seconds / t.seconds, 1), 9)
              << pad_left(fixed(100 * attn / t.seconds, 1), 7)
              << pad_left(fixed(100 * t.dense_attention / t.seconds, 1), 7)
              << pad_left(fixed(100 * t.lighthouse_attention / t.seconds, 1), 6)
              << pad_left(fixed(gflops, 1), 16)
              << pad_left(sgemm ? fixed(100 * gflops / *sgemm, 0) + "%" : std::string("-"), 10)
              << pad_left(fixed(t.last_loss, 4), 11) << "\n";
    nlohmann::json& j = summary["stage" + std::to_string(s + 1)];
    j = {{"steps", t.steps},
         {"tokens", t.tokens},
         {"seconds", t.seconds},
         {"tok_per_s", static_cast<double>(t.tokens) / t.seconds},
         {"matmul_fraction", t.matmul_seconds / t.seconds},
         {"matmul_gflops", gflops},
         {"attention_fraction",
          {{"dense", t.dense_attention / t.seconds},
           {"lighthouse", t.lighthouse_attention / t.seconds}}},
         {"last_train_loss", t.last_loss}};
    if (sgemm) j["matmul_of_sgemm"] = gflops / *sgemm;
  }
  if (sgemm) {
    std::cout << "SGEMM reference (" << sgemm_size
              << "^3 on OpenBLAS's threads, this run): " << fixed(*sgemm, 1) << " GFLOP/s\n";
    summary["sgemm_gflops"] = *sgemm;
  }
  if (!evals.empty()) {
    std::cout << "final held-out loss (dense attention): "
              << fixed(evals.back().second.dense_loss, 4) << " at step " << evals.back().first
              << "\n";
    summary["final_dense_eval_loss"] = evals.back().second.dense_loss;
    std::cout << "count-model baselines on the held-out data: unigram " << fixed(unigram, 4)
              << ", bigram " << fixed(bigram, 4) << "\n";
    summary["unigram_loss"] = unigram;
    summary["bigram_loss"] = bigram;
    if (const auto& recall = evals.back().second.recall_loss) {
      std::cout << "held-out loss on long-range answers (dense attention): " << fixed(*recall, 3)
                << " over " << evals.back().second.recall_tokens
                << " digits (about 2.3 = ln 10 without the fact)\n";
      summary["final_recall_loss"] = *recall;
    }
  }
  if (passkey_trials > 0 && !passkey_lengths.empty()) {
    const train::PasskeyReport pk = train::passkey_eval(
        trainer.model(), passkey_lengths, {0.0, 0.25, 0.5, 0.75, 1.0}, passkey_trials, config.seed);
    std::cout << "passkey accuracy (dense attention): " << fixed(100 * pk.accuracy(), 1) << "% of "
              << pk.trials << " (chance 10%)";
    nlohmann::json cells = nlohmann::json::array();
    for (const auto& c : pk.cells) {
      cells.push_back(
          {{"length", c.length}, {"depth", c.depth}, {"correct", c.correct}, {"trials", c.trials}});
    }
    for (std::int64_t n : passkey_lengths) {
      int correct = 0, trials = 0;
      for (const auto& c : pk.cells) {
        if (c.length == n) correct += c.correct, trials += c.trials;
      }
      std::cout << "; " << n << ": " << correct << "/" << trials;
    }
    std::cout << "\n";
    summary["passkey"] = {{"accuracy", pk.accuracy()}, {"cells", cells}};
  }
  if (!leak.is_null()) summary["leak_probe"] = leak;
  std::cout << "wall-clock: " << duration_text(wall) << "\n";
  log(summary);
  if (!a.metrics.empty()) std::cout << "metrics: " << a.metrics << "\n";
  if (report) report->summary = summary;
  return kExitOk;
}

std::string cell(const nlohmann::json& j, const char* key, int digits, double scale = 1) {
  return j.contains(key) && j[key].is_number() ? fixed(scale * j[key].get<double>(), digits) : "-";
}

// Dense from scratch vs Lighthouse -> dense with the same seed, data and token budget.
int run_compare(const TrainArgs& a) {
  const train::TrainConfig c = build_config(a);
  if (c.stage1_steps < 1) reject("--stage1-steps", a.stage1_steps, "--compare needs >= 1");
  if (!a.resume.empty()) reject("--resume", a.resume, "cannot be combined with --compare");
  std::error_code ec;
  std::filesystem::create_directories(a.compare_dir, ec);
  if (ec) reject("--compare-dir", a.compare_dir, "cannot create the folder: " + ec.message());
  const std::string dir = a.compare_dir + "/";
  TrainArgs dense = a, lh = a;
  dense.stage1_steps = "0";
  dense.stage2_steps = std::to_string(c.stage1_steps + c.stage2_steps);
  dense.leak_probe = false;
  dense.metrics = dir + "dense.jsonl";
  lh.leak_probe = true;
  lh.metrics = dir + "lighthouse.jsonl";
  if (!a.save.empty()) dense.save = a.save + "/dense", lh.save = a.save + "/lighthouse";
  RunReport rd, rl;
  std::cout << "== run 1/2: dense attention from scratch ==\n";
  run_train(dense, &rd);
  std::cout << "\n== run 2/2: Lighthouse (stage 1) -> dense (stage 2) ==\n";
  run_train(lh, &rl);

  // The switch: the last stage-1 training loss against the stage-2 losses that follow it.
  double before = 0, jump = 0;
  std::string recover = "not within the run";
  for (std::size_t i = 0; i < rl.losses.size(); ++i) {
    if (rl.losses[i].first != c.stage1_steps) continue;
    before = rl.losses[i].second;
    if (i + 1 < rl.losses.size()) jump = rl.losses[i + 1].second - before;
    for (std::size_t k = i + 1; k < rl.losses.size(); ++k) {
      if (rl.losses[k].second <= before) {
        recover = std::to_string(rl.losses[k].first - c.stage1_steps) + " steps";
        break;
      }
    }
  }
  const nlohmann::json& sd = rd.summary;
  const nlohmann::json& sl = rl.summary;
  auto tok = [](const nlohmann::json& s, const char* stage) {
    return s.contains(stage) ? rate_text(s[stage]["tok_per_s"].get<double>()) : std::string("-");
  };
  // "A% (lh B%)": the share of a stage's step time in attention, and in Lighthouse attention.
  auto attention = [](const nlohmann::json& s, const char* stage) {
    if (!s.contains(stage)) return std::string("-");
    const nlohmann::json& f = s[stage]["attention_fraction"];
    const double dense = f["dense"].get<double>(), lh = f["lighthouse"].get<double>();
    return fixed(100 * (dense + lh), 0) + "%" + (lh > 0 ? " (lh " + fixed(100 * lh, 0) + "%)" : "");
  };
  // "G (P%)": the matmuls' GFLOP/s in a stage and their share of the run's SGEMM rate.
  auto matmul = [](const nlohmann::json& s, const char* stage) {
    if (!s.contains(stage)) return std::string("-");
    const nlohmann::json& t = s[stage];
    return fixed(t["matmul_gflops"].get<double>(), 0) +
           (t.contains("matmul_of_sgemm")
                ? " (" + fixed(100 * t["matmul_of_sgemm"].get<double>(), 0) + "%)"
                : std::string());
  };
  auto passkey = [](const nlohmann::json& s) {
    return s.contains("passkey") ? fixed(100 * s["passkey"]["accuracy"].get<double>(), 1) + "%"
                                 : std::string("-");
  };
  const double loss_d = sd.value("final_dense_eval_loss", 0.0);
  const double loss_l = sl.value("final_dense_eval_loss", 0.0);
  const double wall_d = sd["wall_seconds"].get<double>(), wall_l = sl["wall_seconds"].get<double>();
  // One row of the table: what, the dense run's value, the Lighthouse -> dense run's value.
  auto row = [](const std::string& what, const std::string& dense, const std::string& lh) {
    return pad_right(what, 34) + pad_left(dense, 14) + pad_left(lh, 20) + "\n";
  };
  std::cout << "\n== comparison at "
            << (c.stage1_steps + c.stage2_steps) * c.seq * c.batch * c.accum
            << " training tokens each ==\n"
            << row("", "dense", "lighthouse->dense")
            << row("wall-clock (training + evals)", duration_text(wall_d), duration_text(wall_l))
            << row("tok/s stage 1 (lighthouse)", "-", tok(sl, "stage1"))
            << row("tok/s dense steps", tok(sd, "stage2"), tok(sl, "stage2"))
            << row("attention share, stage 1", "-", attention(sl, "stage1"))
            << row("attention share, dense steps", attention(sd, "stage2"), attention(sl, "stage2"))
            << row("matmul GFLOP/s (of SGEMM), stage 1", "-", matmul(sl, "stage1"))
            << row("matmul GFLOP/s (of SGEMM), dense", matmul(sd, "stage2"), matmul(sl, "stage2"))
            << row("final held-out loss (dense)", fixed(loss_d, 4),
                   fixed(loss_l, 4) + " (" + (loss_l >= loss_d ? "+" : "") +
                       fixed(100 * (loss_l - loss_d) / loss_d, 1) + "%)")
            << row("unigram / bigram baseline",
                   cell(sd, "unigram_loss", 2) + " / " + cell(sd, "bigram_loss", 2), "(same data)")
            << row("long-range answers loss (dense)", cell(sd, "final_recall_loss", 3),
                   cell(sl, "final_recall_loss", 3))
            << row("passkey accuracy", passkey(sd), passkey(sl))
            << row("loss jump at the switch", "-", fixed(jump, 4))
            << row("steps to recover the stage-1 loss", "-", recover);
  if (sl.contains("leak_probe")) {
    std::cout << row(
        "leak probe (loss diff, 95% CI)", "-",
        cell(sl["leak_probe"], "mean_diff", 4) + " +- " + cell(sl["leak_probe"], "ci95", 4));
  }
  const std::string svg = dir + "compare.svg";
  write_text_atomically(svg, plot_runs_svg({{"dense", dense.metrics}, {"lighthouse", lh.metrics}}));
  std::cout << "metrics: " << dense.metrics << ", " << lh.metrics << "\nplot: " << svg << "\n";
  return kExitOk;
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
      "about --seq/2 bytes long whose facts, set near the top, are queried in the second half.\n"
      "The defaults are the main job: `lighthouse train --compare` in a few minutes on 2 cores.");
  auto opt = [&](const char* name, std::string& value, const char* help, const char* type) {
    app->add_option(name, value, help)->capture_default_str()->type_name(type);
  };
  opt("--stage1-steps", args->stage1_steps, "optimizer steps with Lighthouse attention", "S1");
  opt("--stage2-steps", args->stage2_steps, "optimizer steps with dense attention", "S2");
  opt("--levels", args->levels, "Lighthouse pyramid levels L (stage 1)", "L");
  opt("--pool", args->pool, "Lighthouse pooling factor p (stage 1)", "P");
  opt("--topk", args->topk, "Lighthouse top-k budget K (stage 1)", "K");
  opt("--selection", args->selection,
      "Lighthouse selection (stage 1): original (leaks the future, issue 11) or causal", "MODE");
  add_scorer_flags(app, args->scorer);
  opt("--dense-layers", args->dense_layers,
      "layers kept dense in stage 1: default, none or a list like 0,1,4,5", "LIST");
  opt("--dim", args->dim, "model width", "C");
  opt("--layers", args->layers, "decoder layers", "L");
  opt("--heads", args->heads, "attention heads (dim / heads must be even)", "H");
  opt("--hidden", args->hidden, "SwiGLU width, 0 = about 8/3 * dim", "F");
  opt("--init-std", args->init_std,
      "standard deviation of the initial weights (output projections: / sqrt(2 * layers))", "S");
  app->add_flag("--untied", args->untied, "separate LM head instead of the embedding's transpose");
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
  opt("--heldout", args->heldout, "fraction of the data held out for evaluation", "F");
  app->add_option("--metrics", args->metrics, "write metrics as JSON lines")->type_name("FILE");
  opt("--threads", args->threads, "worker threads (attention, matmuls, layers), 0 = all", "T");
  opt("--sgemm-size", args->sgemm_size, "n of the reference SGEMM at the end (0 = skip)", "n");
  app->add_option("--save", args->save, "write checkpoints under DIR (step-NNNNNNNN folders)")
      ->type_name("DIR");
  opt("--save-every", args->save_every, "checkpoint every M steps (and at the end), 0 = end only",
      "M");
  app->add_option("--resume", args->resume,
                  "continue bit-exactly from a checkpoint folder, or the latest under DIR; the "
                  "model, data and --seq/--batch/--accum/--stage1-steps must match")
      ->type_name("DIR");
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
      "train dense from scratch for S1 + S2 steps, then Lighthouse -> dense (S1, S2) with "
      "the same seed and data; print both side by side and plot them");
  opt("--compare-dir", args->compare_dir,
      "where --compare writes dense.jsonl, lighthouse.jsonl and compare.svg", "DIR");
  app->add_flag("--quiet", args->quiet, "no progress on stderr");
  app->add_option("--config", args->config,
                  "JSON object of flag: value (keys are the flag names without dashes); flags on "
                  "the command line override it, unknown keys are errors")
      ->type_name("FILE");
  return {app, [args, app] {
            if (!args->config.empty()) apply_json_config(*app, args->config);
            return args->compare ? run_compare(*args) : run_train(*args);
          }};
}

}  // namespace lighthouse::cli
