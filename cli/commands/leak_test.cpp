// `lighthouse leak-test`: does an attention configuration let a model read the future? Trains
// the byte-level LM of src/train on independent uniform random bytes (generated in memory from
// --seed) under that attention and reports its held-out loss under the same attention minus
// ln 256 (the entropy of the data, which no causal predictor beats), with a 95% interval over the
// held-out tokens, and the same model's loss under dense attention. Exit status 0 either way; the
// verdict is the last line.
#include <cmath>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <omp.h>
#include <nlohmann/json.hpp>

#include "common/args.hpp"
#include "common/atomic_text.hpp"
#include "common/commands.hpp"
#include "common/format.hpp"
#include "common/progress.hpp"
#include "train/language_model.hpp"
#include "train/leak_test.hpp"

namespace lighthouse::cli {

namespace {

// Small defaults: about a minute on 2 CPU cores, enough for the original selection to show its
// leak clearly (docs/RESULTS.md has the measurements).
struct LeakArgs {
  std::string levels = "2", pool = "4", topk = "128", selection = "original";
  std::string dense_layers = "none";
  std::string layers = "1", dim = "64", heads = "4", init_std = "0.06";
  std::string seq = "1024", batch = "1", steps = "200", lr = "3e-3", warmup = "10";
  std::string eval_tokens = "64k", seed = "1", threads = "0", device = "cpu";
  std::string json;
  bool quiet = false;
};

std::vector<int> parse_layers_list(const std::string& text, int layers) {
  if (text == "none") return {};
  if (text == "default") return train::default_dense_layers(layers);
  std::vector<int> out;
  for (const std::string& item : split_list("--dense-layers", text)) {
    out.push_back(parse_int32("--dense-layers", item, 0, layers - 1));
  }
  return out;
}

train::LeakTestConfig build_config(const LeakArgs& a) {
  train::LeakTestConfig lc;
  train::TrainConfig& c = lc.train;
  c.model.layers = parse_int32("--layers", a.layers, 1, 1024);
  c.model.dim = parse_int32("--dim", a.dim, 2, 1 << 16);
  c.model.heads = parse_int32("--heads", a.heads, 1, 1024);
  c.model.init_std = parse_positive_double("--init-std", a.init_std);
  c.seq = parse_int("--seq", a.seq, 2, 1 << 24);
  c.batch = parse_int("--batch", a.batch, 1, 1 << 16);
  c.stage1_steps = parse_int("--steps", a.steps, 1, 1 << 30);
  c.stage2_steps = 0;
  c.lighthouse.levels = parse_int32("--levels", a.levels, 1, 16);
  c.lighthouse.pool = parse_int32("--pool", a.pool, 2, 1 << 16);
  c.lighthouse.topk = parse_int32("--topk", a.topk, 1, 1 << 30);
  c.lighthouse.selection = parse_selection(a.selection, "--selection");
  c.dense_layers = parse_layers_list(a.dense_layers, c.model.layers);
  c.schedule.lr = parse_positive_double("--lr", a.lr);
  c.schedule.warmup = parse_int("--warmup", a.warmup, 0, 1 << 30);
  c.schedule.decay = train::Decay::kConstant;
  c.seed = static_cast<std::uint64_t>(parse_int("--seed", a.seed, 0));
  c.threads = parse_int32("--threads", a.threads, 0, 4096);
  lc.eval_tokens = parse_int("--eval-tokens", a.eval_tokens, 2, 1ll << 32);
  if (a.device == "cuda") {
    if (!train::cuda_model_available()) {
      reject("--device", a.device, "needs the CUDA build and a GPU (use --device cpu)");
    }
    // bf16 activations, cuDNN's deterministic backward where the library can run it.
    lc.make_model = [](const train::TrainConfig& t) {
      return train::make_cuda_model(t.model, t.seed, t.adamw, train::CudaModelOptions{});
    };
  } else if (a.device != "cpu") {
    reject("--device", a.device, "must be cpu or cuda");
  }
  return lc;
}

std::string signed_text(double x, int digits) {
  return (x >= 0 ? "+ " : "- ") + fixed(std::abs(x), digits);
}

nlohmann::json interval_json(const train::LossInterval& i) {
  return {{"mean", i.mean}, {"excess", i.excess()}, {"ci95", i.ci95}, {"tokens", i.tokens}};
}

int run_leak_test(const LeakArgs& a) {
  const train::LeakTestConfig config = build_config(a);
  if (!a.json.empty()) check_writable_path("--json", a.json);
  const train::TrainConfig& c = config.train;
  if (c.threads > 0) omp_set_num_threads(c.threads);  // one pool for attention and matmuls
  const Config& lh = c.lighthouse;
  const std::string attention =
      lh.levels == 1 ? std::string("dense")
                     : "L" + std::to_string(lh.levels) + " p" + std::to_string(lh.pool) + " K" +
                           std::to_string(lh.topk) + ", selection " + selection_name(lh.selection);
  std::cout << "lighthouse leak-test: " << c.model.layers << " layers x " << c.model.dim << ", seq "
            << c.seq << ", " << c.stage1_steps << " steps on uniform random bytes under "
            << attention << " (entropy ln 256 = " << fixed(train::kByteEntropy, 4)
            << " nats/byte)\n"
            << std::flush;
  Progress progress(static_cast<int>(c.stage1_steps), a.quiet);
  const train::LeakTestResult r =
      train::run_leak_test(config, [&](std::int64_t step, std::int64_t total) {
        progress.step("leak-test step " + std::to_string(step) + "/" + std::to_string(total));
      });
  progress.finish();

  auto line = [](const std::string& what, const train::LossInterval& i) {
    return pad_right(what, 36) + fixed(i.mean, 4) + " = ln 256 " + signed_text(i.excess(), 4) +
           " +- " + fixed(i.ci95, 4) + " (95% CI, " + std::to_string(i.tokens) + " tokens)\n";
  };
  std::cout << line("held-out loss under " + std::string(lh.levels == 1 ? "dense" : "Lighthouse"),
                    r.lighthouse)
            << line("same model under dense attention", r.dense)
            << "final training loss: " << fixed(r.final_train_loss, 4) << ", "
            << fixed(r.seconds, 1) << " s\n";
  if (r.leaks()) {
    std::cout << "leaks: loss under Lighthouse is " << fixed(-r.lighthouse.excess(), 4) << " +- "
              << fixed(r.lighthouse.ci95, 4) << " nats below the entropy of the data\n";
  } else {
    std::cout << "no leak detected: the 95% interval of the loss under Lighthouse contains or "
                 "lies above ln 256\n";
  }
  if (!a.json.empty()) {
    const nlohmann::json j = {{"levels", lh.levels},
                              {"pool", lh.pool},
                              {"topk", lh.topk},
                              {"selection", selection_name(lh.selection)},
                              {"layers", c.model.layers},
                              {"dim", c.model.dim},
                              {"heads", c.model.heads},
                              {"seq", c.seq},
                              {"steps", c.stage1_steps},
                              {"seed", c.seed},
                              {"entropy", train::kByteEntropy},
                              {"lighthouse", interval_json(r.lighthouse)},
                              {"dense", interval_json(r.dense)},
                              {"final_train_loss", r.final_train_loss},
                              {"leaks", r.leaks()},
                              {"seconds", r.seconds}};
    write_text_atomically(a.json, j.dump(2) + "\n");
  }
  return kExitOk;
}

}  // namespace

Command add_leak_test_command(CLI::App& parent) {
  auto args = std::make_shared<LeakArgs>();
  CLI::App* app = parent.add_subcommand(
      "leak-test",
      "Train on uniform random bytes: does the attention let a model read the future?");
  app->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app->footer(
      "Independent uniform bytes have an entropy of ln 256 = 5.5452 nats per byte, and no causal\n"
      "predictor does better on held-out bytes. A held-out loss whose whole 95% interval lies\n"
      "below ln 256 means the attention leaks: a position reads (part of) the byte it predicts.\n"
      "The original selection leaks (issue 11); --selection causal and stride must not. Prints\n"
      "both losses (the trained attention and dense) and a verdict line; exit status 0 either\n"
      "way.");
  auto opt = [&](const char* name, std::string& value, const char* help, const char* type) {
    app->add_option(name, value, help)->capture_default_str()->type_name(type);
  };
  opt("--levels", args->levels, "Lighthouse pyramid levels L (1 = dense attention)", "L");
  opt("--pool", args->pool, "Lighthouse pooling factor p", "P");
  opt("--topk", args->topk, "Lighthouse top-k budget K", "K");
  opt("--selection", args->selection, "Lighthouse selection: original, causal or stride", "MODE");
  opt("--dense-layers", args->dense_layers,
      "layers with dense attention: none, default (as train) or a list like 0,3", "LIST");
  opt("--layers", args->layers, "decoder layers", "L");
  opt("--dim", args->dim, "model width", "C");
  opt("--heads", args->heads, "attention heads (dim / heads must be even)", "H");
  opt("--init-std", args->init_std, "standard deviation of the initial weights", "S");
  opt("--seq", args->seq, "sequence length (64k = 65536)", "N");
  opt("--batch", args->batch, "sequences per step", "B");
  opt("--steps", args->steps, "optimizer steps (fresh random bytes each)", "S");
  opt("--lr", args->lr, "learning rate (constant after the warmup)", "LR");
  opt("--warmup", args->warmup, "linear warmup steps", "W");
  opt("--eval-tokens", args->eval_tokens, "held-out tokens scored (whole sequences)", "T");
  opt("--seed", args->seed, "seed of the weights and the bytes", "S");
  opt("--threads", args->threads, "worker threads, 0 = all", "T");
  opt("--device", args->device, "cpu or cuda (the CUDA model, bf16)", "D");
  app->add_option("--json", args->json, "also write the result as JSON")->type_name("FILE");
  app->add_flag("--quiet", args->quiet, "no progress on stderr");
  return {app, [args] { return run_leak_test(*args); }};
}

}  // namespace lighthouse::cli
