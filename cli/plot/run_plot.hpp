// Loss curves of `lighthouse train` runs from their metrics (JSONL) files, shared by
// `lighthouse plot` and `lighthouse train --compare`.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace lighthouse::cli {

struct RunCurves {
  std::string name;  // legend prefix
  std::string file;  // metrics JSONL
};

// Training loss (solid) and dense held-out loss (dashed, dots) per run against the step, with a
// dotted line at each run's stage switch (config.stage1_steps, when 0 < it < the last step).
// Throws InvalidArgument naming the file and line when a file is missing or a line is not JSON.
// y_max: loss_chart_svg's cap of the y axis.
std::string plot_runs_svg(const std::vector<RunCurves>& runs,
                          std::optional<double> y_max = std::nullopt);

}  // namespace lighthouse::cli
