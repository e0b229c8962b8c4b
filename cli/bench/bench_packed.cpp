#include "bench/bench_packed.hpp"

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_measure.hpp"
#include "common/atomic_text.hpp"
#include "lighthouse/error.hpp"
#include "lighthouse/plan.hpp"

namespace lighthouse::cli {

namespace {

// Documents of `len` tokens filling each of `batch` rows of `seq` tokens (the last one shorter).
std::vector<std::int32_t> offsets(std::int64_t batch, std::int64_t seq, std::int64_t len) {
  std::vector<std::int32_t> cu{0};
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t at = len; at < seq; at += len) {
      cu.push_back(static_cast<std::int32_t>(b * seq + at));
    }
    cu.push_back(static_cast<std::int32_t>((b + 1) * seq));
  }
  return cu;
}

nlohmann::json timing_json(const Timing& t) {
  return {{"fwd_ms", t.fwd_ms}, {"bwd_ms", t.bwd_ms}, {"fwd_bwd_ms", t.fwd_bwd_ms}};
}

std::string ms(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", v);
  return text;
}

}  // namespace

int run_bench_packed(const PackedBenchSetup& s) {
  MeasureSetup setup;
  setup.device = s.device;
  setup.dtype = s.dtype;
  setup.repeats = s.repeats;
  setup.warmup = s.warmup;
  setup.threads = s.threads;
  setup.deterministic = s.deterministic;
  // Every plan is made (and so every rule checked) before the first measurement.
  for (std::int64_t n : s.seqs) {
    make_plan(s.config, s.batch, n, s.heads, s.head_dim, s.kv_heads);
    if (s.batch * n >= (std::int64_t{1} << 31)) {
      throw InvalidArgument("seq", std::to_string(n), "B * N must fit in int32 (cu_seqlens)");
    }
  }
  std::printf(
      "packed documents of %lld tokens vs one sequence; padding N vs the next valid N' "
      "(Lighthouse fwd+bwd, ms, medians of %d, side by side; %s %s)\n",
      static_cast<long long>(s.doc_len), s.repeats, device_name(s.device), dtype_name(s.dtype));
  std::printf("%10s %6s %12s %12s %8s %10s %12s %12s %8s\n", "N", "docs", "one seq", "packed",
              "ratio", "N'", "at N", "at N'", "ratio");
  nlohmann::json rows = nlohmann::json::array();
  for (std::int64_t n : s.seqs) {
    if (!s.quiet) std::cerr << "bench: N = " << n << "\n";
    const Plan plan = make_plan(s.config, s.batch, n, s.heads, s.head_dim, s.kv_heads);
    const std::int64_t padded = plan.runs_padded() ? plan.padded_seq : n;
    const HostInputs longest =
        random_inputs(s.seed, {s.batch, padded, s.heads, s.head_dim}, s.kv_heads);
    const HostInputs one = padded == n ? longest : first_tokens(longest, n);
    HostInputs packed = one;
    packed.cu_seqlens = offsets(s.batch, n, s.doc_len);
    const std::int64_t docs = static_cast<std::int64_t>(packed.cu_seqlens.size()) - 1;
    const auto pack = measure_side_by_side({MeasureCase{s.config, one}, {s.config, packed}}, setup);
    nlohmann::json row = {{"seq", n},
                          {"docs", docs},
                          {"doc_len", s.doc_len},
                          {"one_sequence", timing_json(pack[0])},
                          {"packed", timing_json(pack[1])},
                          {"padded_seq", padded}};
    std::string pad_cols = "         -            -            -        -";
    if (padded != n) {
      const auto pad =
          measure_side_by_side({MeasureCase{s.config, one}, {s.config, longest}}, setup);
      row["at_seq"] = timing_json(pad[0]);
      row["at_padded_seq"] = timing_json(pad[1]);
      char text[96];
      std::snprintf(text, sizeof text, "%10lld %12s %12s %7.2fx", static_cast<long long>(padded),
                    ms(pad[0].fwd_bwd_ms).c_str(), ms(pad[1].fwd_bwd_ms).c_str(),
                    pad[0].fwd_bwd_ms / pad[1].fwd_bwd_ms);
      pad_cols = text;
    }
    std::printf("%10lld %6lld %12s %12s %7.2fx %s\n", static_cast<long long>(n),
                static_cast<long long>(docs), ms(pack[0].fwd_bwd_ms).c_str(),
                ms(pack[1].fwd_bwd_ms).c_str(), pack[1].fwd_bwd_ms / pack[0].fwd_bwd_ms,
                pad_cols.c_str());
    std::fflush(stdout);
    rows.push_back(row);
  }
  if (!s.json.empty()) {
    const nlohmann::json j = {{"kind", "packed_documents"},
                              {"device", device_name(s.device)},
                              {"dtype", dtype_name(s.dtype)},
                              {"batch", s.batch},
                              {"heads", s.heads},
                              {"kv_heads", s.kv_heads ? s.kv_heads : s.heads},
                              {"head_dim", s.head_dim},
                              {"levels", s.config.levels},
                              {"pool", s.config.pool},
                              {"topk", s.config.topk},
                              {"selection", selection_name(s.config.selection)},
                              {"repeats", s.repeats},
                              {"rows", rows}};
    write_text_atomically(s.json, j.dump(2) + "\n");
  }
  return 0;
}

}  // namespace lighthouse::cli
