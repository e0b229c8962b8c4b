// `lighthouse train --compare`: dense attention from scratch against Lighthouse -> dense, with the
// same seed, data, schedule and number of training tokens, and what sets them apart: the loss
// jump at the switch to dense and the steps needed to get back below the last stage-1 loss.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "train/run.hpp"

namespace lighthouse::train {

struct CompareReport {
  RunReport dense, lighthouse;
  std::int64_t tokens_per_run = 0;
  double jump = 0;  // first stage-2 training loss minus the last stage-1 one (0: no stage 2)
  std::optional<std::int64_t> recover_steps;  // empty: not within the run
};

// The two arms derived from one set of options (whose stage1_steps must be >= 1): dense for
// stage1_steps + stage2_steps steps, no leak probe; and Lighthouse -> dense as given, with the
// leak probe. Checkpoints (options.save) go to SAVE/dense and SAVE/lighthouse.
RunOptions dense_arm(const RunOptions& options);
RunOptions lighthouse_arm(const RunOptions& options);

// The switch of a Lighthouse -> dense run: the jump and the recovery.
void measure_switch(const RunReport& lighthouse, std::int64_t stage1_steps, CompareReport* out);

// Runs the dense arm, then the Lighthouse one; `hooks_for(index, arm)` ("dense", "lighthouse";
// index 0, 1) is called just before each run starts and gives its hooks. InvalidArgument for
// stage1_steps < 1 or a --resume.
CompareReport run_compare(
    const RunOptions& options,
    const std::function<RunHooks(int index, const std::string& arm)>& hooks_for);

}  // namespace lighthouse::train
