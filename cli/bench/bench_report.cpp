#include "bench/bench_report.hpp"

#include <array>

#include "common/format.hpp"
#include "plot/svg_plot.hpp"

namespace lighthouse::cli {

namespace {

double gflops(double flops, double ms) {
  return ms > 0 ? flops / (ms * 1e-3) / 1e9 : 0;
}

const BenchRow* find_row(const BenchReport& r, Impl impl, std::int64_t seq) {
  for (const BenchRow& row : r.rows) {
    if (row.impl == impl && row.seq == seq && row.timing) return &row;
  }
  return nullptr;
}

// Lighthouse rows only: how much faster than dense, and how far above the floor (fwd+bwd).
std::optional<double> speedup_vs_dense(const BenchReport& r, const BenchRow& row) {
  const BenchRow* dense = find_row(r, Impl::kDense, row.seq);
  if (row.impl != Impl::kLighthouse || !row.timing || !dense) return std::nullopt;
  return dense->timing->fwd_bwd_ms / row.timing->fwd_bwd_ms;
}

std::optional<double> ratio_vs_floor(const BenchReport& r, const BenchRow& row) {
  const BenchRow* floor = find_row(r, Impl::kFloor, row.seq);
  if (row.impl != Impl::kLighthouse || !row.timing || !floor) return std::nullopt;
  return row.timing->fwd_bwd_ms / floor->timing->fwd_bwd_ms;
}

std::optional<double> fwd_ratio_vs_floor(const BenchReport& r, const BenchRow& row) {
  const BenchRow* floor = find_row(r, Impl::kFloor, row.seq);
  if (row.impl != Impl::kLighthouse || !row.timing || !floor) return std::nullopt;
  return row.timing->fwd_ms / floor->timing->fwd_ms;
}

std::string cell(std::optional<double> value, int decimals, const std::string& suffix = "") {
  return value ? fixed(*value, decimals) + suffix : "-";
}

nlohmann::json stages_json(const std::optional<StageTimes>& t) {
  if (!t) return nullptr;
  return {{"pyramid", t->pyramid},     {"selection", t->selection}, {"gather", t->gather},
          {"attention", t->attention}, {"scatter", t->scatter},     {"total", t->total()}};
}

// fwd, bwd and fwd+bwd of interleaved runs: the side-by-side loop's, or measure()'s extra ones.
std::optional<std::array<double, 3>> interleaved_times(const Timing& t) {
  if (t.side_by_side) return std::array<double, 3>{t.fwd_ms, t.bwd_ms, t.fwd_bwd_ms};
  if (!t.interleaved_fwd_ms) return std::nullopt;
  return std::array<double, 3>{*t.interleaved_fwd_ms, *t.interleaved_bwd_ms,
                               *t.interleaved_fwd_bwd_ms};
}

// "norm" or "dilated/4": the scorer and its dilation.
std::string scorer_text(const Config& config) {
  std::string text = scorer_name(config.scorer);
  if (config.scorer == Scorer::kDilated) text += "/" + std::to_string(config.dilation);
  return text;
}

nlohmann::json optional_json(std::optional<double> value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

}  // namespace

void print_table(const BenchReport& r, bool stages, std::ostream& out) {
  const bool with_sgemm = r.sgemm_gflops.has_value();
  out << "# lighthouse bench: " << device_name(r.device) << " " << dtype_name(r.dtype)
      << ", B=" << r.batch << " H=" << r.heads
      << (r.kv_heads && r.kv_heads != r.heads ? " Hkv=" + std::to_string(r.kv_heads) : "")
      << " D=" << r.head_dim << ", L=" << r.config.levels << " p=" << r.config.pool
      << " K=" << r.config.topk << " " << selection_name(r.config.selection) << " "
      << scorer_text(r.config) << ", median of " << r.repeats << " after " << r.warmup
      << " warm-up, threads " << (r.threads > 0 ? std::to_string(r.threads) : "all")
      << (r.device == Device::kCUDA
              ? (r.deterministic ? ", deterministic backward" : ", cuDNN's fast (atomic) backward")
              : "")
      << "\n";
  out << "# machine: " << (r.machine.hostname.empty() ? "?" : r.machine.hostname) << ", "
      << (r.machine.cpu_model.empty() ? "unknown cpu" : r.machine.cpu_model) << ", "
      << r.machine.hardware_threads << " hardware threads\n";
  bool any_side_by_side = false;
  for (const BenchRow& row : r.rows) any_side_by_side |= row.timing && row.timing->side_by_side;
  if (any_side_by_side) {
    out << "# lighthouse and floor timed side by side: one loop per N alternates them (fwd, bwd, "
           "fwd+bwd); peak_GiB of each alone\n";
  }
  if (with_sgemm) {
    out << "# sgemm " << r.sgemm_size << "^3 (OpenBLAS): " << fixed(*r.sgemm_gflops, 1)
        << " GFLOP/s\n";
  }

  const std::vector<std::pair<std::string, std::size_t>> columns = [&] {
    std::vector<std::pair<std::string, std::size_t>> c = {
        {"impl", 10},        {"N", 9},           {"S", 9},
        {"fwd_ms", 11},      {"bwd_ms", 11},     {"fwd+bwd_ms", 12},
        {"fwd_GFLOP/s", 12}, {"bwd_GFLOP/s", 12}};
    if (with_sgemm) {
      c.push_back({"fwd_%sgemm", 11});
      c.push_back({"bwd_%sgemm", 11});
    }
    c.push_back({"dense/lh", 10});
    c.push_back({"lh/floor", 10});
    c.push_back({"fwd lh/floor", 13});
    if (r.device == Device::kCUDA) c.push_back({"peak_GiB", 10});
    return c;
  }();
  for (std::size_t i = 0; i < columns.size(); ++i) {
    out << (i == 0 ? pad_right(columns[i].first, columns[i].second)
                   : pad_left(columns[i].first, columns[i].second));
  }
  out << "\n";
  for (const BenchRow& row : r.rows) {
    std::vector<std::string> cells = {impl_name(row.impl), std::to_string(row.seq),
                                      std::to_string(row.S)};
    const std::optional<Timing>& t = row.timing;
    auto ms = [&](double Timing::*m) { return t ? fixed((*t).*m, 3) : std::string("-"); };
    cells.push_back(ms(&Timing::fwd_ms));
    cells.push_back(ms(&Timing::bwd_ms));
    cells.push_back(ms(&Timing::fwd_bwd_ms));
    const std::optional<double> fg =
        t ? std::optional<double>(gflops(row.fwd_flops, t->fwd_ms)) : std::nullopt;
    const std::optional<double> bg =
        t ? std::optional<double>(gflops(row.bwd_flops, t->bwd_ms)) : std::nullopt;
    cells.push_back(cell(fg, 1));
    cells.push_back(cell(bg, 1));
    if (with_sgemm) {
      cells.push_back(fg ? fixed(100 * *fg / *r.sgemm_gflops, 1) + "%" : "-");
      cells.push_back(bg ? fixed(100 * *bg / *r.sgemm_gflops, 1) + "%" : "-");
    }
    cells.push_back(cell(speedup_vs_dense(r, row), 2, "x"));
    cells.push_back(cell(ratio_vs_floor(r, row), 2, "x"));
    cells.push_back(cell(fwd_ratio_vs_floor(r, row), 2, "x"));
    if (r.device == Device::kCUDA) {
      cells.push_back(t && t->peak_device_bytes
                          ? fixed(static_cast<double>(*t->peak_device_bytes) / (1 << 30), 2)
                          : std::string("-"));
    }
    for (std::size_t i = 0; i < cells.size(); ++i) {
      out << (i == 0 ? pad_right(cells[i], columns[i].second)
                     : pad_left(cells[i], columns[i].second));
    }
    out << "\n";
  }
  for (const BenchRow& row : r.rows) {
    if (!row.error.empty()) {
      out << "# failed: " << impl_name(row.impl) << " N=" << row.seq << ": " << row.error << "\n";
    }
  }
  for (const BenchSkip& s : r.skipped) {
    out << "# skipped: " << impl_name(s.impl) << " N=" << s.seq << ": " << s.reason << "\n";
  }

  if (stages) {
    out << "# per-stage medians (ms), lighthouse; the pyramid includes the "
        << scorer_text(r.config) << " scorer"
        << (r.config.scorer == Scorer::kDilated ? " (its two attentions per subsequence)" : "")
        << "\n";
    out << pad_right("impl", 10) << pad_left("N", 9) << pad_left("pass", 6)
        << pad_left("pyramid", 10) << pad_left("selection", 11) << pad_left("gather", 10)
        << pad_left("attention", 11) << pad_left("scatter", 10) << pad_left("total", 10) << "\n";
    for (const BenchRow& row : r.rows) {
      if (row.impl != Impl::kLighthouse || !row.timing) continue;
      for (const auto& [pass, st] :
           {std::pair{"fwd", row.timing->stages_fwd}, std::pair{"bwd", row.timing->stages_bwd}}) {
        if (!st) continue;
        out << pad_right(impl_name(row.impl), 10) << pad_left(std::to_string(row.seq), 9)
            << pad_left(pass, 6) << pad_left(fixed(st->pyramid, 3), 10)
            << pad_left(fixed(st->selection, 3), 11) << pad_left(fixed(st->gather, 3), 10)
            << pad_left(fixed(st->attention, 3), 11) << pad_left(fixed(st->scatter, 3), 10)
            << pad_left(fixed(st->total(), 3), 10) << "\n";
      }
    }
  }
  // fwd+bwd against fwd + bwd, from the three separate loops and from interleaved runs. A
  // side-by-side row's own times are interleaved runs (its loop runs fwd, the bwd of that fresh
  // context and fwd+bwd in every repeat) and it has no separate loops.
  bool back_to_back = false;
  for (const BenchRow& row : r.rows) back_to_back |= row.timing && interleaved_times(*row.timing);
  if (back_to_back) {
    out << "# back to back (ms): fwd+bwd - fwd - bwd, separate loops | interleaved runs (fwd, "
           "bwd, fwd+bwd)"
        << (any_side_by_side ? "; side by side: the table's own times" : "") << "\n";
    for (const BenchRow& row : r.rows) {
      const std::optional<std::array<double, 3>> inter =
          row.timing ? interleaved_times(*row.timing) : std::nullopt;
      if (!inter) continue;
      const Timing& t = *row.timing;
      const std::string separate =
          t.side_by_side ? std::string("-") : fixed(t.fwd_bwd_ms - t.fwd_ms - t.bwd_ms, 3);
      const auto [f, b, fb] = *inter;
      out << pad_right(impl_name(row.impl), 10) << pad_left(std::to_string(row.seq), 9)
          << pad_left(separate, 10) << " |" << pad_left(fixed(fb - f - b, 3), 9) << " ("
          << fixed(f, 3) << ", " << fixed(b, 3) << ", " << fixed(fb, 3) << ")\n";
    }
  }
  out << "# peak RSS: " << bytes_text(static_cast<double>(r.peak_rss_bytes)) << "\n";
}

nlohmann::json report_json(const BenchReport& r) {
  nlohmann::json impls = nlohmann::json::array();
  for (Impl i : r.impls) impls.push_back(impl_name(i));
  nlohmann::json config = {{"levels", r.config.levels},
                           {"pool", r.config.pool},
                           {"topk", r.config.topk},
                           {"selection", selection_name(r.config.selection)},
                           {"scorer", scorer_name(r.config.scorer)},
                           {"dilation", r.config.dilation},
                           {"batch", r.batch},
                           {"heads", r.heads},
                           {"kv_heads", r.kv_heads ? r.kv_heads : r.heads},
                           {"head_dim", r.head_dim},
                           {"dtype", dtype_name(r.dtype)},
                           {"repeats", r.repeats},
                           {"warmup", r.warmup},
                           {"threads", r.threads},
                           {"deterministic", r.deterministic},
                           {"side_by_side", r.side_by_side},
                           {"seed", r.seed},
                           {"seq", r.seqs},
                           {"impl", impls}};
  nlohmann::json rows = nlohmann::json::array();
  for (const BenchRow& row : r.rows) {
    // side_by_side: fwd_ms, bwd_ms and fwd_bwd_ms come from one loop with the other impl of
    // its N (lighthouse and floor), not from loops of its own.
    nlohmann::json j = {{"impl", impl_name(row.impl)},
                        {"seq", row.seq},
                        {"S", row.S},
                        {"fwd_flops", row.fwd_flops},
                        {"bwd_flops", row.bwd_flops},
                        {"scorer_flops", row.scorer_flops},
                        {"side_by_side", row.timing && row.timing->side_by_side}};
    if (row.timing) {
      const Timing& t = *row.timing;
      const double fg = gflops(row.fwd_flops, t.fwd_ms), bg = gflops(row.bwd_flops, t.bwd_ms);
      j["fwd_ms"] = t.fwd_ms;
      j["bwd_ms"] = t.bwd_ms;
      j["fwd_bwd_ms"] = t.fwd_bwd_ms;
      j["fwd_gflops"] = fg;
      j["bwd_gflops"] = bg;
      j["fwd_sgemm_fraction"] =
          r.sgemm_gflops ? nlohmann::json(fg / *r.sgemm_gflops) : nlohmann::json(nullptr);
      j["bwd_sgemm_fraction"] =
          r.sgemm_gflops ? nlohmann::json(bg / *r.sgemm_gflops) : nlohmann::json(nullptr);
      j["peak_device_bytes"] =
          t.peak_device_bytes ? nlohmann::json(*t.peak_device_bytes) : nlohmann::json(nullptr);
      j["interleaved"] = t.interleaved_fwd_ms
                             ? nlohmann::json{{"fwd_ms", *t.interleaved_fwd_ms},
                                              {"bwd_ms", *t.interleaved_bwd_ms},
                                              {"fwd_bwd_ms", *t.interleaved_fwd_bwd_ms}}
                             : nlohmann::json(nullptr);
      j["stages_fwd"] = stages_json(t.stages_fwd);
      j["stages_bwd"] = stages_json(t.stages_bwd);
    } else {
      for (const char* key :
           {"fwd_ms", "bwd_ms", "fwd_bwd_ms", "fwd_gflops", "bwd_gflops", "fwd_sgemm_fraction",
            "bwd_sgemm_fraction", "interleaved", "stages_fwd", "stages_bwd"}) {
        j[key] = nullptr;
      }
      j["error"] = row.error;
    }
    if (row.impl == Impl::kLighthouse) {
      j["speedup_vs_dense"] = optional_json(speedup_vs_dense(r, row));
      j["ratio_vs_floor"] = optional_json(ratio_vs_floor(r, row));
      j["fwd_ratio_vs_floor"] = optional_json(fwd_ratio_vs_floor(r, row));
    }
    rows.push_back(j);
  }
  nlohmann::json skipped = nlohmann::json::array();
  for (const BenchSkip& s : r.skipped) {
    skipped.push_back({{"impl", impl_name(s.impl)}, {"seq", s.seq}, {"reason", s.reason}});
  }
  return {{"device", device_name(r.device)},
          {"machine",
           {{"hostname", r.machine.hostname},
            {"cpu", r.machine.cpu_model},
            {"hardware_threads", r.machine.hardware_threads}}},
          {"sgemm_gflops", optional_json(r.sgemm_gflops)},
          {"sgemm_size", r.sgemm_size},
          {"config", config},
          {"rows", rows},
          {"skipped", skipped},
          {"peak_rss_bytes", r.peak_rss_bytes}};
}

std::string report_svg(const BenchReport& r) {
  std::vector<PlotSeries> series = {
      {"dense", "#1f77b4", {}}, {"lighthouse", "#ff7f0e", {}}, {"floor", "#2ca02c", {}}};
  for (const BenchRow& row : r.rows) {
    if (!row.timing) continue;
    series[static_cast<std::size_t>(row.impl)].points.emplace_back(static_cast<double>(row.seq),
                                                                   row.timing->fwd_bwd_ms);
  }
  PlotLabels labels;
  labels.title = std::string("Lighthouse attention fwd+bwd: ") + device_name(r.device) + " " +
                 dtype_name(r.dtype) + ", B=" + std::to_string(r.batch) +
                 " H=" + std::to_string(r.heads) +
                 (r.kv_heads && r.kv_heads != r.heads ? " Hkv=" + std::to_string(r.kv_heads) : "") +
                 " D=" + std::to_string(r.head_dim) + ", L=" + std::to_string(r.config.levels) +
                 " p=" + std::to_string(r.config.pool) + " K=" + std::to_string(r.config.topk) +
                 " " + selection_name(r.config.selection) + " " + scorer_text(r.config);
  labels.x_label = "sequence length N (tokens)";
  labels.y_label = "fwd+bwd latency (ms)";
  return log_log_chart_svg(labels, series);
}

}  // namespace lighthouse::cli
