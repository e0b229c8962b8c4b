// `lighthouse plot RUN.jsonl [RUN2.jsonl ...] --out FILE.svg`: the loss curves of training runs.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/args.hpp"
#include "common/atomic_text.hpp"
#include "common/commands.hpp"
#include "plot/loss_chart.hpp"
#include "plot/run_plot.hpp"

namespace lighthouse::cli {

namespace {

constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c",
                                   "#9467bd", "#ff7f0e", "#8c564b"};

}  // namespace

std::string plot_runs_svg(const std::vector<RunCurves>& runs, std::optional<double> y_max) {
  std::vector<LossSeries> series;
  std::vector<VerticalMarker> markers;
  for (std::size_t r = 0; r < runs.size(); ++r) {
    const std::string color = kColors[r % std::size(kColors)];
    std::ifstream in(runs[r].file);
    if (!in) reject("RUN.jsonl", runs[r].file, "cannot open for reading");
    LossSeries train{{runs[r].name + " train", color, {}}, false};
    LossSeries eval{{runs[r].name + " dense eval", color, {}}, true};
    std::int64_t stage1 = 0, last = 0;
    int line_no = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_no;
      if (line.empty()) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
        const std::string type = j.value("type", "");
        if (type == "config") stage1 = j.value("stage1_steps", std::int64_t{0});
        if (type == "step") {
          last = j.at("step").get<std::int64_t>();
          train.series.points.emplace_back(static_cast<double>(last), j.at("loss").get<double>());
        }
        if (type == "eval") {
          eval.series.points.emplace_back(j.at("step").get<double>(),
                                          j.at("dense_loss").get<double>());
        }
      } catch (const nlohmann::json::exception& e) {
        reject("RUN.jsonl", runs[r].file,
               "line " + std::to_string(line_no) + " is not a metrics record: " + e.what());
      }
    }
    series.push_back(std::move(train));
    series.push_back(std::move(eval));
    if (stage1 > 0 && stage1 < last) {
      markers.push_back({static_cast<double>(stage1), runs[r].name + ": switch to dense", color});
    }
  }
  return loss_chart_svg({"Loss curves", "optimizer step", "loss (nats per byte)"}, series, markers,
                        y_max);
}

Command add_plot_command(CLI::App& parent) {
  struct Args {
    std::vector<std::string> runs;
    std::string out, y_max;
  };
  auto args = std::make_shared<Args>();
  CLI::App* app = parent.add_subcommand(
      "plot", "Draw the loss curves of `lighthouse train --metrics` files as an SVG");
  app->add_option("runs", args->runs, "metrics files (JSON lines) of one or more runs")
      ->type_name("RUN.jsonl")
      ->required();
  app->add_option("--out", args->out, "the SVG to write")->type_name("FILE.svg")->required();
  app->add_option("--y-max", args->y_max,
                  "cap the loss axis at Y (> 0); the curves are clipped there (default: the "
                  "highest point, which a run's first steps can put far above the rest)")
      ->type_name("Y");
  return {app, [args] {
            std::optional<double> y_max;
            if (!args->y_max.empty()) y_max = parse_double("--y-max", args->y_max, 1e-9, 1e9);
            check_writable_path("--out", args->out);
            std::vector<RunCurves> runs;
            for (const std::string& f : args->runs) {
              runs.push_back({std::filesystem::path(f).stem().string(), f});
            }
            write_text_atomically(args->out, plot_runs_svg(runs, y_max));
            std::cout << "plot: " << args->out << "\n";
            return kExitOk;
          }};
}

}  // namespace lighthouse::cli
