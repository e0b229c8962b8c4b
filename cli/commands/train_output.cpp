#include "commands/train_output.hpp"

#include <cstdio>
#include <iostream>
#include <iterator>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/format.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cli {

namespace {

std::string duration_text(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s";
  return std::to_string(s / 3600) + "h" + std::to_string(s / 60 % 60) + "m";
}

std::string rate_text(double tokens_per_s) {
  return tokens_per_s >= 1000 ? fixed(tokens_per_s / 1000, 1) + "k" : fixed(tokens_per_s, 0);
}

std::string sci(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2e", value);
  return text;
}

std::string percent(const std::optional<double>& fraction, int decimals = 1) {
  return fraction ? fixed(100 * *fraction, decimals) + "%" : std::string("-");
}

std::string memory_text(std::int64_t bytes) {
  return bytes < 0 ? std::string("-") : bytes_text(static_cast<double>(bytes));
}

std::string cell(const std::optional<double>& v, int digits) {
  return v ? fixed(*v, digits) : "-";
}

std::optional<double> final_loss(const train::RunReport& r) {
  if (r.evals.empty()) return std::nullopt;
  return r.evals.back().second.dense_loss;
}

// One of the last evaluation's optional losses (recall_loss, recall_first_loss).
std::optional<double> final_eval(const train::RunReport& r,
                                 std::optional<double> train::EvalResult::*loss) {
  if (r.evals.empty()) return std::nullopt;
  return r.evals.back().second.*loss;
}

// The side-by-side table's cells from one run.
std::string stage_rate(const train::RunReport& r, int stage) {
  const train::StageTotals& t = r.stages[stage - 1];
  return t.steps > 0 ? rate_text(t.tokens_per_second()) : std::string("-");
}

// "A% (lh B%)": the share of a stage's step time in attention, and in Lighthouse attention.
std::string attention_share(const train::RunReport& r, int stage) {
  const train::StageTotals& t = r.stages[stage - 1];
  if (t.steps == 0) return "-";
  const double dense = t.times.dense_attention / t.seconds;
  const double lh = t.times.lighthouse_attention / t.seconds;
  return fixed(100 * (dense + lh), 0) + "%" + (lh > 0 ? " (lh " + fixed(100 * lh, 0) + "%)" : "");
}

// "G (P%)": the matmuls' GFLOP/s in a stage and their share of the peak (the CPU: the SGEMM).
std::string matmul_rate(const train::RunReport& r, int stage, bool cpu) {
  const train::StageTotals& t = r.stages[stage - 1];
  if (t.steps == 0) return "-";
  const double gflops = t.times.matmul > 0 ? t.flops.matmul / t.times.matmul / 1e9 : 0;
  const bool share = r.peak && (r.peak->sgemm || !cpu);
  return fixed(gflops, 0) +
         (share ? " (" + fixed(100 * gflops * 1e9 / r.peak->flops, 0) + "%)" : std::string());
}

// "E% / D%": MFU of a stage counted with the executed and with the dense-equivalent FLOPs.
std::string stage_mfu(const train::RunReport& r, int stage) {
  const train::StageTotals& t = r.stages[stage - 1];
  if (t.steps == 0 || !r.peak) return "-";
  return fixed(100 * t.flops.executed() / t.seconds / r.peak->flops, 1) + "% / " +
         fixed(100 * t.flops.dense_equivalent() / t.seconds / r.peak->flops, 1) + "%";
}

// "< 128: 0.44 (310); 128-1K: 1.20 (95); ...": each class's loss and count.
std::string distance_classes_text(const train::EvalResult& e) {
  static const char* names[] = {"< 128", "128-1K", "1K-8K", ">= 8K"};
  static_assert(std::size(names) == train::kRecallDistanceClasses);
  std::string out;
  for (std::size_t c = 0; c < std::size(names); ++c) {
    const auto& loss = e.recall_first_by_distance[c];
    const std::string value = loss ? fixed(*loss, 2) : std::string("-");
    out += std::string(c ? "; " : "") + names[c] + ": " + value + " (" +
           std::to_string(e.recall_first_by_distance_tokens[c]) + ")";
  }
  return out;
}

// The last evaluation's first-digit loss of distance classes c and c + 1: "0.44 / 1.20".
std::string distance_pair(const train::RunReport& r, std::size_t c) {
  if (r.evals.empty() || !r.evals.back().second.recall_first_loss) return "-";
  const train::EvalResult& e = r.evals.back().second;
  auto one = [&](std::size_t k) {
    return e.recall_first_by_distance[k] ? fixed(*e.recall_first_by_distance[k], 2) : "-";
  };
  return one(c) + " / " + one(c + 1);
}

std::string passkey_cell(const train::RunReport& r) {
  return r.passkey ? fixed(100 * r.passkey->accuracy(), 1) + "%" : std::string("-");
}

}  // namespace

RunPrinter::RunPrinter(const train::RunOptions& options, std::string metrics, bool quiet)
    : options_(options), metrics_path_(std::move(metrics)), quiet_(quiet) {}

train::RunHooks RunPrinter::hooks() {
  train::RunHooks h;
  h.record = [this](const std::string& json) { record(json); };
  h.started = [this](const train::RunStart& s) { started(s); };
  h.step = [this](const train::StepMetrics& m) { step(m); };
  h.evaluated = [this](std::int64_t step, const train::EvalResult& e) { evaluated(step, e); };
  h.leak_probe = [this](std::int64_t step, const train::LeakProbeResult& r) {
    leak_probe(step, r);
  };
  h.saved = [this](std::int64_t step, const std::string& folder) {
    note("step " + std::to_string(step) + ": checkpoint " + folder);
  };
  h.finished = [this](const train::RunReport& r) { summary(r); };
  return h;
}

void RunPrinter::record(const std::string& json) {
  if (metrics_path_.empty()) return;
  if (!metrics_.is_open()) {
    metrics_.open(metrics_path_, std::ios::trunc);
    if (!metrics_) throw Error(metrics_path_ + ": cannot open for writing");
  }
  metrics_ << json << "\n" << std::flush;
}

void RunPrinter::note(const std::string& line) {
  if (progress_) {
    progress_->note(line);
  } else if (!quiet_) {
    std::cerr << line << "\n";
  }
}

void RunPrinter::started(const train::RunStart& s) {
  const train::TrainConfig& c = options_.config;
  if (!s.resumed_folder.empty()) {
    std::cout << "resumed from " << s.resumed_folder << " at step " << s.resumed_from << "\n";
  }
  std::cout << "lighthouse train: " << s.parameters << " parameters, " << c.model.layers
            << " layers x " << c.model.dim << ", seq " << c.seq << ", " << c.batch * c.accum
            << " sequences/step; stage 1 " << c.stage1_steps << " steps (levels "
            << c.lighthouse.levels << ", pool " << c.lighthouse.pool << ", topk "
            << c.lighthouse.topk << "), stage 2 " << c.stage2_steps << " steps dense; "
            << s.train_tokens << " training tokens, " << s.heldout_tokens << " held-out\n";
  const train::DeviceSetup& d = options_.device;
  std::cout << "device: " << d.kind << (d.name.empty() ? "" : " (" + d.name + ")") << ", "
            << d.precision;
  if (d.kind == "cuda") {
    std::cout << ", recompute " << d.recompute << ", deterministic "
              << (d.deterministic ? "on" : "off");
  }
  std::cout << "; MFU against "
            << (options_.peak
                    ? fixed(options_.peak->flops / 1e12, 3) + " TFLOP/s (" +
                          (options_.peak->sgemm ? "SGEMM " : "") + options_.peak->source + ")"
                    : std::string("no known peak (--peak-tflops)"))
            << "\n"
            << std::flush;
  progress_ = std::make_unique<Progress>(static_cast<int>(s.total_steps - s.resumed_from), quiet_);
}

// llm.c's line: step | loss | norm | lr | ms | MFU | tok/s, then the time left.
void RunPrinter::step(const train::StepMetrics& m) {
  const train::StepResult& r = m.result;
  recent_ = recent_ == 0 ? r.seconds : 0.8 * recent_ + 0.2 * r.seconds;
  const double tok_s = static_cast<double>(r.tokens) / r.seconds;
  progress_->step(
      "stage " + std::to_string(r.stage) + " | loss " + fixed(r.loss, 4) + " | norm " +
      fixed(r.grad_norm, 4) + " | lr " + sci(r.lr) + " | " + fixed(1e3 * r.seconds, 1) +
      " ms | MFU " + percent(m.mfu) + " (dense-eq " + percent(m.mfu_dense_equivalent) + ") | " +
      rate_text(tok_s) + " tok/s ETA " +
      duration_text(recent_ * static_cast<double>(options_.config.stage1_steps +
                                                  options_.config.stage2_steps - r.step)));
}

void RunPrinter::evaluated(std::int64_t step, const train::EvalResult& e) {
  note("step " + std::to_string(step) + ": held-out loss " + fixed(e.dense_loss, 4) + " (dense)" +
       (e.train_attention_loss ? ", " + fixed(*e.train_attention_loss, 4) + " (training attention)"
                               : std::string()) +
       (e.recall_loss ? "; long-range answers " + fixed(*e.recall_loss, 3) : std::string()) +
       (e.recall_first_loss ? " (first digit " + fixed(*e.recall_first_loss, 3) + ")"
                            : std::string()));
}

void RunPrinter::leak_probe(std::int64_t step, const train::LeakProbeResult& r) {
  if (progress_) progress_->finish();
  std::cout << "leak probe at step " << step << " (" << r.samples.size()
            << " positions, stage-1 attention): loss with the real future " << fixed(r.mean_real, 4)
            << ", with random bytes after t " << fixed(r.mean_corrupt, 4) << ", difference "
            << fixed(r.mean_diff, 4) << " +- " << fixed(r.ci95, 4) << " (95% CI)\n";
}

// The per-stage table (where a training step's time went, attention split into the dense
// layers' and the Lighthouse layers'; the matmuls' rate against the peak; MFU both ways; peak
// memory), then the evaluations at the end.
void RunPrinter::summary(const train::RunReport& r) {
  if (progress_) progress_->finish();
  const std::optional<train::PeakRate>& peak = r.peak;
  const bool sgemm = peak && peak->sgemm;
  const bool cpu = options_.device.kind == "cpu";
  std::cout << "\nstage  attention    steps     tokens   seconds    tok/s  matmul%  attn% (dense"
               "   lh)  matmul GFLOP/s  "
            << (cpu ? "of SGEMM" : " of peak")
            << "  last loss     MFU  dense-eq MFU  peak memory\n";
  for (int s = 0; s < 2; ++s) {
    const train::StageTotals& t = r.stages[s];
    if (t.steps == 0) continue;
    const double attn = t.times.dense_attention + t.times.lighthouse_attention;
    const double gflops = t.times.matmul > 0 ? t.flops.matmul / t.times.matmul / 1e9 : 0;
    std::optional<double> of_peak, mfu, mfu_dense;
    if (peak && (sgemm || !cpu)) of_peak = gflops * 1e9 / peak->flops;
    if (peak) {
      mfu = t.flops.executed() / t.seconds / peak->flops;
      mfu_dense = t.flops.dense_equivalent() / t.seconds / peak->flops;
    }
    std::cout << pad_left(std::to_string(s + 1), 5) << "  "
              << pad_right(s == 0 ? "lighthouse" : "dense", 10)
              << pad_left(std::to_string(t.steps), 8) << pad_left(std::to_string(t.tokens), 11)
              << pad_left(fixed(t.seconds, 1), 10) << pad_left(rate_text(t.tokens_per_second()), 9)
              << pad_left(fixed(100 * t.times.matmul / t.seconds, 1), 9)
              << pad_left(fixed(100 * attn / t.seconds, 1), 7)
              << pad_left(fixed(100 * t.times.dense_attention / t.seconds, 1), 7)
              << pad_left(fixed(100 * t.times.lighthouse_attention / t.seconds, 1), 6)
              << pad_left(fixed(gflops, 1), 16) << pad_left(percent(of_peak, 0), 10)
              << pad_left(fixed(t.last_loss, 4), 11) << pad_left(percent(mfu), 8)
              << pad_left(percent(mfu_dense), 14) << pad_left(memory_text(t.peak_memory_bytes), 13)
              << "\n";
  }
  if (sgemm) {
    std::cout << "SGEMM reference (" << peak->source << "): " << fixed(peak->flops / 1e9, 1)
              << " GFLOP/s\n";
  } else if (peak) {
    std::cout << "peak rate (" << peak->source << "): " << fixed(peak->flops / 1e12, 1)
              << " TFLOP/s\n";
  }
  if (!r.evals.empty()) {
    const train::EvalResult& last = r.evals.back().second;
    std::cout << "final held-out loss (dense attention): " << fixed(last.dense_loss, 4)
              << " at step " << r.evals.back().first << "\n";
    std::cout << "count-model baselines on the held-out data: unigram " << fixed(r.start.unigram, 4)
              << ", bigram " << fixed(r.start.bigram, 4) << "\n";
    if (last.recall_loss) {
      std::cout << "held-out loss on long-range answers (dense attention): "
                << fixed(*last.recall_loss, 3) << " over " << last.recall_tokens
                << " digits (about 2.3 = ln 10 without the fact)";
      if (last.recall_first_loss) {
        std::cout << "; first digits " << fixed(*last.recall_first_loss, 3) << " (ln 9 = 2.197)"
                  << "\nfirst digits by how far back the key was last written: "
                  << distance_classes_text(last);
      }
      std::cout << "\n";
    }
  }
  if (r.passkey) {
    const train::PasskeyReport& pk = *r.passkey;
    std::cout << "passkey accuracy (dense attention): " << fixed(100 * pk.accuracy(), 1) << "% of "
              << pk.trials << " (chance 11%)";
    for (std::int64_t n : options_.passkey_lengths) {
      int correct = 0, trials = 0;
      for (const auto& c : pk.cells) {
        if (c.length == n) correct += c.correct, trials += c.trials;
      }
      std::cout << "; " << n << ": " << correct << "/" << trials;
    }
    std::cout << "; loss on the digit " << fixed(pk.loss(), 3)
              << " (ln 9 = 2.197 without the fact)\n";
  }
  std::cout << "wall-clock: " << duration_text(r.wall_seconds) << "\n";
  if (!metrics_path_.empty()) std::cout << "metrics: " << metrics_path_ << "\n";
}

// The evaluation at the end of stage 1 (the last one with the stage-1 attention's loss).
static const train::EvalResult* stage1_end_eval(const train::RunReport& r) {
  const train::EvalResult* out = nullptr;
  for (const auto& [step, e] : r.evals) {
    if (e.train_attention_loss) out = &e;
  }
  return out;
}

void print_comparison(const train::CompareReport& cmp, bool cpu) {
  const train::ArmReport* dense = cmp.find(train::Arm::kDense);
  const std::optional<double> loss_d = dense ? final_loss(dense->report) : std::nullopt;
  // One row of the table: what, then one cell per arm; `f` gives an arm's cell.
  auto row = [&](const std::string& what, const auto& f) {
    std::string line = pad_right(what, 36);
    for (const train::ArmReport& a : cmp.arms) line += pad_left(f(a), 18);
    return line + "\n";
  };
  auto lh_only = [](const train::ArmReport& a, const std::string& v) {
    return a.arm == train::Arm::kDense ? std::string("-") : v;
  };
  const std::string matmul_label = cpu ? "matmul GFLOP/s (of SGEMM)" : "matmul GFLOP/s (of peak)";
  std::cout
      << "\n== comparison at " << cmp.tokens_per_run << " training tokens each ==\n"
      << row("",
             [](const train::ArmReport& a) {
               return a.arm == train::Arm::kDense ? std::string("dense")
                                                  : std::string(arm_name(a.arm)) + "->dense";
             })
      << row("wall-clock (training + evals)",
             [](const auto& a) { return duration_text(a.report.wall_seconds); })
      << row("seconds stage 1 / dense steps",
             [&](const auto& a) {
               return lh_only(a, fixed(a.report.stages[0].seconds, 1)) + " / " +
                      fixed(a.report.stages[1].seconds, 1);
             })
      << row("tok/s stage 1 (lighthouse)", [](const auto& a) { return stage_rate(a.report, 1); })
      << row("tok/s dense steps", [](const auto& a) { return stage_rate(a.report, 2); })
      << row("attention share, stage 1", [](const auto& a) { return attention_share(a.report, 1); })
      << row("attention share, dense steps",
             [](const auto& a) { return attention_share(a.report, 2); })
      << row(matmul_label + ", stage 1",
             [&](const auto& a) { return matmul_rate(a.report, 1, cpu); })
      << row(matmul_label + ", dense", [&](const auto& a) { return matmul_rate(a.report, 2, cpu); })
      << row("MFU stage 1 (executed / dense-eq)",
             [](const auto& a) { return stage_mfu(a.report, 1); })
      << row("MFU dense steps", [](const auto& a) { return stage_mfu(a.report, 2); })
      << row("stage-1 end held-out, own attention",
             [](const auto& a) {
               const train::EvalResult* e = stage1_end_eval(a.report);
               return e ? fixed(*e->train_attention_loss, 4) : std::string("-");
             })
      << row("stage-1 end held-out, dense",
             [](const auto& a) {
               const train::EvalResult* e = stage1_end_eval(a.report);
               return e ? fixed(e->dense_loss, 4) : std::string("-");
             })
      << row("final held-out loss (dense)",
             [&](const auto& a) {
               const std::optional<double> l = final_loss(a.report);
               std::string out = cell(l, 4);
               if (l && loss_d && a.arm != train::Arm::kDense) {
                 out += " (" + std::string(*l >= *loss_d ? "+" : "") +
                        fixed(100 * (*l - *loss_d) / *loss_d, 1) + "%)";
               }
               return out;
             })
      << row("unigram / bigram baseline",
             [](const auto& a) {
               return fixed(a.report.start.unigram, 2) + " / " + fixed(a.report.start.bigram, 2);
             })
      << row("long-range answers loss (dense)",
             [](const auto& a) {
               return cell(final_eval(a.report, &train::EvalResult::recall_loss), 3);
             })
      << row("  first digits only (key match)",
             [](const auto& a) {
               return cell(final_eval(a.report, &train::EvalResult::recall_first_loss), 3);
             })
      << row("  key < 128 / 128-1K back", [](const auto& a) { return distance_pair(a.report, 0); })
      << row("  key 1K-8K / >= 8K back", [](const auto& a) { return distance_pair(a.report, 2); })
      << row("passkey accuracy", [](const auto& a) { return passkey_cell(a.report); })
      << row("  loss on its digit (ln 9 = 2.197)",
             [](const auto& a) {
               return a.report.passkey ? fixed(a.report.passkey->loss(), 3) : std::string("-");
             })
      << row("loss jump at the switch", [&](const auto& a) { return lh_only(a, fixed(a.jump, 4)); })
      << row("steps to recover the stage-1 loss", [&](const auto& a) {
           return lh_only(a, a.recover_steps ? std::to_string(*a.recover_steps) + " steps"
                                             : std::string("not within the run"));
         });
  std::cout << row("leak probe (loss diff, 95% CI)", [](const auto& a) {
    return a.report.leak
               ? fixed(a.report.leak->mean_diff, 4) + " +- " + fixed(a.report.leak->ci95, 4)
               : std::string("-");
  });
}

std::string comparison_json(const train::CompareReport& cmp) {
  nlohmann::json arms = nlohmann::json::array();
  for (const train::ArmReport& a : cmp.arms) {
    const train::RunReport& r = a.report;
    nlohmann::json j = {{"arm", train::arm_name(a.arm)}, {"wall_seconds", r.wall_seconds}};
    for (int s = 0; s < 2; ++s) {
      const train::StageTotals& t = r.stages[s];
      j[s == 0 ? "stage1" : "stage2"] = {{"steps", t.steps},
                                         {"tokens", t.tokens},
                                         {"seconds", t.seconds},
                                         {"tokens_per_second", t.tokens_per_second()},
                                         {"last_loss", t.last_loss}};
    }
    const auto opt = [](const std::optional<double>& v) {
      return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
    };
    j["final_dense_loss"] = opt(final_loss(r));
    j["recall_loss"] = opt(final_eval(r, &train::EvalResult::recall_loss));
    j["recall_first_loss"] = opt(final_eval(r, &train::EvalResult::recall_first_loss));
    if (!r.evals.empty()) {
      j["recall_first_by_distance"] = train::recall_distance_json(r.evals.back().second);
    }
    if (const train::EvalResult* e = stage1_end_eval(r)) {
      j["stage1_end"] = {{"own_attention_loss", *e->train_attention_loss},
                         {"dense_loss", e->dense_loss}};
    }
    if (r.passkey) j["passkey"] = train::passkey_json(*r.passkey);
    if (a.arm != train::Arm::kDense) {
      j["jump"] = a.jump;
      j["recover_steps"] =
          a.recover_steps ? nlohmann::json(*a.recover_steps) : nlohmann::json(nullptr);
    }
    if (r.leak) {
      j["leak_probe"] = {{"step", r.leak_step},
                         {"samples", r.leak->samples.size()},
                         {"mean_diff", r.leak->mean_diff},
                         {"ci95", r.leak->ci95},
                         {"mean_real", r.leak->mean_real},
                         {"mean_corrupt", r.leak->mean_corrupt}};
    }
    arms.push_back(std::move(j));
  }
  return nlohmann::json{{"tokens_per_run", cmp.tokens_per_run}, {"arms", arms}}.dump(1) + "\n";
}

}  // namespace lighthouse::cli
