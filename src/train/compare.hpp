// `lighthouse train --compare`: dense attention from scratch against Lighthouse -> dense under each
// selection rule (original, causal, stride), with the same seed, data, schedule and number of
// training tokens, and what sets them apart: the loss jump at the switch to dense and the steps
// needed to get back below the last stage-1 loss.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "lighthouse/config.hpp"
#include "train/run.hpp"

namespace lighthouse::train {

// One recipe of the comparison.
enum class Arm { kDense, kOriginal, kCausal, kStride };

const char* arm_name(Arm arm);  // "dense", "original", "causal", "stride"
// A comma-separated list of distinct arms ("dense,original,causal"); InvalidArgument naming
// `param` otherwise.
std::vector<Arm> parse_arms(const std::string& text, const std::string& param = "arms");

struct ArmReport {
  Arm arm = Arm::kDense;
  RunReport report;
  double jump = 0;  // first stage-2 training loss minus the last stage-1 one (0: no switch)
  std::optional<std::int64_t> recover_steps;  // empty: not within the run (or no switch)
};

struct CompareReport {
  std::vector<ArmReport> arms;  // in the order asked
  std::int64_t tokens_per_run = 0;
  const ArmReport* find(Arm arm) const;  // nullptr when the arm was not run
};

// The options of one arm, derived from one set of options (whose stage1_steps must be >= 1):
// dense for stage1_steps + stage2_steps steps, no leak probe; a Lighthouse arm as given with its
// selection rule and the leak probe. Checkpoints (options.save) go to SAVE/<arm name>.
RunOptions arm_options(const RunOptions& options, Arm arm);

// The switch of a Lighthouse -> dense run: the jump and the recovery.
void measure_switch(const RunReport& lighthouse, std::int64_t stage1_steps, ArmReport* out);

// Runs the arms in order; `hooks_for(index, arm)` is called just before each run starts and gives
// its hooks. InvalidArgument for stage1_steps < 1, no arm, or a --resume.
CompareReport run_compare(const RunOptions& options, const std::vector<Arm>& arms,
                          const std::function<RunHooks(int index, Arm arm)>& hooks_for);

}  // namespace lighthouse::train
