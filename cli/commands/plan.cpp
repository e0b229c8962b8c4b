// `lighthouse plan`: what a configuration means at a sequence length, before any data exists --
// the pyramid, the gathered length S, the tiling, FLOPs against dense attention, memory of the
// gathered tensors -- and whether it is valid at all.
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/args.hpp"
#include "common/commands.hpp"
#include "common/format.hpp"
#include "common/scorer_flags.hpp"
#include "lighthouse/context_parallel.hpp"
#include "lighthouse/plan.hpp"

namespace lighthouse::cli {

namespace {

struct PlanArgs {
  std::string seq, levels, pool, topk, selection = "original";
  std::string heads = "8", head_dim = "128", batch = "1", kv_heads = "0", cp, dtype = "bfloat16";
  ScorerFlags scorer;
  bool json = false;
};

nlohmann::json traffic_json(const CpTraffic& t, const CpTraffic& ulysses) {
  return {{"all_to_all", t.all_to_all},
          {"edges", t.edges},
          {"check", t.check},
          {"total", t.total()},
          {"ulysses", ulysses.total()}};
}

nlohmann::json cp_json(const ShardPlan& sp, DType dtype) {
  return {{"cp", sp.world},
          {"chunks", 2 * sp.world},
          {"chunk_seq", sp.chunk_seq},
          {"chunk_tiles", sp.chunk.tiles},
          {"chunk_rows", sp.chunk_rows},
          {"heads_per_rank", sp.heads_per_rank},
          {"edge_tokens", sp.edge_tokens},
          {"dtype", dtype_name(dtype)},
          {"bytes_sent_per_rank",
           {{"forward", traffic_json(sp.forward_traffic(dtype), sp.ulysses_forward_traffic(dtype))},
            {"backward",
             traffic_json(sp.backward_traffic(dtype), sp.ulysses_backward_traffic(dtype))}}}};
}

// The bytes one rank sends per call: this design (the gathered rows) against Ulysses (the
// tokens), by collective.
void print_cp(const ShardPlan& sp, DType dtype) {
  std::cout << "context parallelism: cp = " << sp.world << " ranks, " << 2 * sp.world
            << " chunks of " << sp.chunk_seq << " tokens";
  if (!sp.plan.dense()) std::cout << " (" << sp.chunk.tiles << " tiles each)";
  std::cout << "; rank r holds chunks r and " << 2 * sp.world - 1 << " - r\n";
  std::cout << "  per rank: " << sp.local_seq << " tokens, " << 2 * sp.chunk_rows
            << " gathered rows, attention over all " << sp.plan.S << " rows for "
            << sp.heads_per_rank << " of " << sp.plan.heads << " heads\n";
  auto b = [](std::int64_t v) { return bytes_text(static_cast<double>(v)); };
  std::cout << "  bytes sent per rank and call (" << dtype_name(dtype)
            << ")   this design       Ulysses   Ulysses/this\n";
  const CpTraffic f = sp.forward_traffic(dtype), w = sp.backward_traffic(dtype);
  const CpTraffic uf = sp.ulysses_forward_traffic(dtype), uw = sp.ulysses_backward_traffic(dtype);
  auto row = [&](const std::string& name, std::int64_t ours, std::int64_t ulysses) {
    std::cout << "    " << name << std::string(name.size() < 34 ? 34 - name.size() : 1, ' ')
              << pad_left(b(ours), 12) << pad_left(b(ulysses), 14)
              << pad_left(ours > 0 ? fixed(static_cast<double>(ulysses) / ours, 1) + "x" : "-", 15)
              << "\n";
  };
  row("forward", f.total(), uf.total());
  row("  all-to-all q, k, v; out", f.all_to_all, uf.all_to_all);
  row("  all-gather of output edges", f.edges, 0);
  row("  agreement check", f.check, 0);
  row("backward", w.total(), uw.total());
  row("  all-to-all dout; dq, dk, dv", w.all_to_all, uw.all_to_all);
  row("  all-gather of dout edges", w.edges, 0);
  row("  agreement check", w.check, 0);
  row("forward + backward", f.total() + w.total(), uf.total() + uw.total());
}

// The largest share of tokens that receive an output of level l: each entry writes c_l tokens
// (spec, stage 4), none before token c_l - 1. A token that no level-1 entry reaches gets no
// output computed from its own query, only from pooled (mean) queries of the blocks around it.
double token_share(const Plan& p, std::size_t l) {
  const std::int64_t reach =
      std::min(p.entries_in_S(l) * p.block[l], p.padded_seq - p.block[l] + 1);
  return static_cast<double>(reach) / static_cast<double>(p.padded_seq);
}

nlohmann::json plan_json(const Plan& p) {
  nlohmann::json levels = nlohmann::json::array();
  for (std::size_t l = 0; l < p.block.size(); ++l) {
    levels.push_back(
        {{"level", l + 1}, {"block", p.block[l]}, {"entries", p.size[l]}, {"offset", p.offset[l]}});
    if (!p.dense_fallback && !p.dense()) {
      levels.back()["in_S"] = p.entries_in_S(l);
      levels.back()["token_share"] = token_share(p, l);
    }
  }
  nlohmann::json j = {
      {"valid", true},
      {"padded_seq", p.padded_seq},
      {"dense_fallback", p.dense_fallback},
      {"levels", levels},
      {"pyramid_size", p.pyramid_size},
      {"S", p.S},
      {"tiles", p.tiles},
      {"C", p.tile_entries},
      {"scale", p.scale},
      {"flops",
       {{"lighthouse", {{"fwd", p.attention_fwd_flops()}, {"bwd", p.attention_bwd_flops()}}},
        {"dense", {{"fwd", p.dense_fwd_flops()}, {"bwd", p.dense_bwd_flops()}}},
        {"dense_over_lighthouse",
         {{"fwd", p.dense_fwd_flops() / p.attention_fwd_flops()},
          {"bwd", p.dense_bwd_flops() / p.attention_bwd_flops()}}}}},
      {"scorer",
       {{"name", scorer_name(p.config.scorer)},
        {"dilation", p.config.dilation},
        {"flops", p.scorer_flops()},
        {"over_lighthouse_fwd_bwd",
         p.scorer_flops() / (p.attention_fwd_flops() + p.attention_bwd_flops())}}},
      {"gathered_bytes", {{"float32", p.gathered_bytes(4)}, {"bfloat16", p.gathered_bytes(2)}}}};
  if (p.dense_fallback) j["padded_S"] = p.padded_S;
  return j;
}

void print_plan(const Plan& p) {
  if (p.dense_fallback) {
    std::cout << "padded length: " << p.padded_seq << " would gather S = " << p.padded_S
              << " >= N = " << p.seq << ": dense causal attention on the N tokens instead\n";
  } else {
    std::cout << "padded length: " << p.padded_seq
              << (p.runs_padded() ? " (N padded with zeros; outputs cut back to N)"
                                  : " (N needs no padding)")
              << "\n";
  }
  const bool selects = !p.dense_fallback && !p.dense();
  std::cout << "pyramid:\n"
            << "  level    block      entries       offset"
            << (selects ? "    in S  tokens written (at most)" : "") << "\n";
  for (std::size_t l = 0; l < p.block.size(); ++l) {
    std::cout << "  " << pad_left(std::to_string(l + 1), 5)
              << pad_left(std::to_string(p.block[l]), 9) << pad_left(std::to_string(p.size[l]), 13)
              << pad_left(std::to_string(p.offset[l]), 13);
    if (selects) {
      std::cout << pad_left(std::to_string(p.entries_in_S(l)), 8)
                << pad_left(fixed(100.0 * token_share(p, l), 1) + "%", 10);
    }
    std::cout << "\n";
  }
  std::cout << "  pyramid size: " << p.pyramid_size << "\n";
  if (selects) {
    std::cout << "  a token outside level 1's " << p.entries_in_S(0)
              << " entries gets no output from its own query, only from the pooled queries of "
                 "the blocks that cover it\n";
  }
  std::cout << "S (gathered length): " << p.S << " (" << fixed(100.0 * p.S / p.seq, 1)
            << "% of N)\n";
  std::cout << "tiles: " << p.tiles << ", C (coarsest entries per tile): " << p.tile_entries
            << "\n";
  std::cout << "scale: " << p.scale << "\n";
  const double lf = p.attention_fwd_flops(), lb = p.attention_bwd_flops();
  const double df = p.dense_fwd_flops(), db = p.dense_bwd_flops();
  std::cout << "attention FLOPs       lighthouse           dense   dense/lighthouse\n";
  std::cout << "  fwd       " << pad_left(flops_text(lf), 16) << pad_left(flops_text(df), 16)
            << pad_left(fixed(df / lf, 2) + "x", 19) << "\n";
  std::cout << "  bwd       " << pad_left(flops_text(lb), 16) << pad_left(flops_text(db), 16)
            << pad_left(fixed(db / lb, 2) + "x", 19) << "\n";
  std::cout << "  fwd+bwd   " << pad_left(flops_text(lf + lb), 16)
            << pad_left(flops_text(df + db), 16)
            << pad_left(fixed((df + db) / (lf + lb), 2) + "x", 19) << "\n";
  const double sf = p.scorer_flops();
  std::cout << "scorer FLOPs (" << scorer_name(p.config.scorer);
  if (p.config.scorer == Scorer::kDilated) std::cout << ", dilation " << p.config.dilation;
  std::cout << ", forward only): " << flops_text(sf) << " (" << fixed(100.0 * sf / (lf + lb), 1)
            << "% of the Lighthouse attention's fwd+bwd)\n";
  std::cout << "gathered tensors (kept for backward"
            << (p.kv_heads != p.heads ? ", k and v once per KV group" : "")
            << "): " << bytes_text(static_cast<double>(p.gathered_bytes(4))) << " fp32, "
            << bytes_text(static_cast<double>(p.gathered_bytes(2))) << " bf16\n";
}

int run_plan(const PlanArgs& a) {
  require_given("--seq", a.seq);
  require_given("--levels", a.levels);
  require_given("--pool", a.pool);
  require_given("--topk", a.topk);
  const std::int64_t seq = parse_int("--seq", a.seq);
  Config config;
  config.levels = parse_int32("--levels", a.levels);
  config.pool = parse_int32("--pool", a.pool);
  config.topk = parse_int32("--topk", a.topk);
  config.selection = parse_selection(a.selection, "--selection");
  apply_scorer_flags(a.scorer, config);
  const std::int64_t heads = parse_int("--heads", a.heads);
  const std::int64_t head_dim = parse_int("--head-dim", a.head_dim);
  const std::int64_t batch = parse_int("--batch", a.batch);
  const std::int64_t kv_heads = parse_int("--kv-heads", a.kv_heads, 0);
  const int cp = a.cp.empty() ? 0 : parse_int32("--cp", a.cp, 1, 1 << 20);
  const DType dtype = parse_dtype(a.dtype, "--dtype");

  nlohmann::json request = {{"seq", seq},
                            {"levels", config.levels},
                            {"pool", config.pool},
                            {"topk", config.topk},
                            {"batch", batch},
                            {"heads", heads},
                            {"head_dim", head_dim},
                            {"selection", selection_name(config.selection)},
                            {"scorer", scorer_name(config.scorer)},
                            {"dilation", config.dilation},
                            {"kv_heads", kv_heads == 0 ? heads : kv_heads}};
  if (cp > 0) request["cp"] = cp;
  if (!a.json) {
    std::cout << "Lighthouse plan: N = " << seq << ", L = " << config.levels
              << ", p = " << config.pool << ", K = " << config.topk << ", selection "
              << selection_name(config.selection) << ", scorer " << scorer_name(config.scorer)
              << (config.scorer == Scorer::kDilated
                      ? " (dilation " + std::to_string(config.dilation) + ")"
                      : std::string())
              << ", B = " << batch << ", H = " << heads
              << (kv_heads != 0 && kv_heads != heads ? " (" + std::to_string(kv_heads) + " KV)"
                                                     : std::string())
              << ", D = " << head_dim << "\n";
  }
  Plan plan;
  ShardPlan sp;
  try {
    plan = make_plan(config, batch, seq, heads, head_dim, kv_heads);
    if (cp > 0 && plan.kv_heads != plan.heads) {
      throw InvalidArgument("--kv-heads", std::to_string(plan.kv_heads),
                            "context parallelism (--cp) supports as many KV heads as heads only "
                            "so far");
    }
    if (cp > 0) sp = make_shard_plan(config, batch, seq, heads, head_dim, cp);
  } catch (const InvalidArgument& e) {
    // Say why on stdout as part of the report, then fail like any other bad input.
    if (a.json) {
      std::cout << nlohmann::json{{"config", request}, {"valid", false}, {"error", e.what()}}.dump(
                       2)
                << "\n";
    } else {
      std::cout << "valid: no \u2014 " << e.what() << "\n";
    }
    std::cout.flush();
    throw;
  }
  if (a.json) {
    nlohmann::json j = plan_json(plan);
    j["config"] = request;
    if (cp > 0) j["context_parallel"] = cp_json(sp, dtype);
    std::cout << j.dump(2) << "\n";
  } else {
    print_plan(plan);
    if (cp > 0) print_cp(sp, dtype);
    std::cout << "valid: yes\n";
  }
  return kExitOk;
}

}  // namespace

Command add_plan_command(CLI::App& parent) {
  auto args = std::make_shared<PlanArgs>();
  CLI::App* app = parent.add_subcommand(
      "plan", "Show the pyramid, S, FLOPs and memory of a configuration, and whether it is valid");
  // A flag given twice takes its last value, as in most command-line tools.
  app->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app->footer(
      "Prints per level the block size, entries and offset, how many entries S holds and the\n"
      "share of tokens they write (a token outside level 1's p*K gets no output computed from\n"
      "its own query); S (the gathered length), tiles and C\n"
      "(coarsest entries per tile); attention FLOPs of Lighthouse vs dense (fwd, bwd, ratio);\n"
      "the scorer's FLOPs (forward only; the dilated scorer's two attentions per subsequence);\n"
      "the memory of the gathered tensors (fp32, bf16); the padded length (any N >= 1 runs: a\n"
      "length that breaks a shape rule is padded with zeros to the next valid one, or, where\n"
      "that length's S would be >= N, is dense causal attention); then \"valid: yes\" or \"valid: "
      "no \u2014\n"
      "<why>\" (exit status 2). With --cp W also the sharding (2W chunks, rank r holding\n"
      "chunks r and 2W-1-r) and the bytes each rank sends per forward and backward, against\n"
      "Ulysses (the all-to-all of q, k, v, out over all N tokens).");
  app->add_option("--seq", args->seq, "sequence length N (required; 64k = 65536)")->type_name("N");
  app->add_option("--levels", args->levels, "pyramid levels L (required)")->type_name("L");
  app->add_option("--pool", args->pool, "pooling factor p (required)")->type_name("P");
  app->add_option("--topk", args->topk, "top-k budget K (required)")->type_name("K");
  app->add_option("--selection", args->selection, "original, causal or stride (same S and cost)")
      ->capture_default_str()
      ->type_name("MODE");
  add_scorer_flags(app, args->scorer);
  app->add_option("--heads", args->heads, "heads H")->capture_default_str()->type_name("H");
  app->add_option("--kv-heads", args->kv_heads,
                  "heads of k and v (grouped-query attention), dividing H; 0 = H")
      ->capture_default_str()
      ->type_name("HKV");
  app->add_option("--head-dim", args->head_dim, "head dim D")
      ->capture_default_str()
      ->type_name("D");
  app->add_option("--batch", args->batch, "batch B")->capture_default_str()->type_name("B");
  app->add_option("--cp", args->cp,
                  "context parallelism over W ranks: check its rules and print the bytes each "
                  "rank sends per call, this design against Ulysses")
      ->type_name("W");
  app->add_option("--dtype", args->dtype, "element type of the --cp traffic")
      ->capture_default_str()
      ->type_name("DTYPE");
  app->add_flag("--json", args->json, "print JSON instead of text");
  return {app, [args] { return run_plan(*args); }};
}

}  // namespace lighthouse::cli
