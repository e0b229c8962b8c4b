#include "train/compare.hpp"

#include "lighthouse/error.hpp"

namespace lighthouse::train {

RunOptions dense_arm(const RunOptions& options) {
  RunOptions dense = options;
  dense.config.stage1_steps = 0;
  dense.config.stage2_steps = options.config.stage1_steps + options.config.stage2_steps;
  dense.leak_probe = false;
  if (!options.save.empty()) dense.save = options.save + "/dense";
  return dense;
}

RunOptions lighthouse_arm(const RunOptions& options) {
  RunOptions lh = options;
  lh.leak_probe = true;
  if (!options.save.empty()) lh.save = options.save + "/lighthouse";
  return lh;
}

void measure_switch(const RunReport& lighthouse, std::int64_t stage1_steps, CompareReport* out) {
  const auto& losses = lighthouse.losses;
  for (std::size_t i = 0; i < losses.size(); ++i) {
    if (losses[i].first != stage1_steps) continue;
    const double before = losses[i].second;
    if (i + 1 < losses.size()) out->jump = losses[i + 1].second - before;
    for (std::size_t k = i + 1; k < losses.size(); ++k) {
      if (losses[k].second <= before) {
        out->recover_steps = losses[k].first - stage1_steps;
        break;
      }
    }
  }
}

CompareReport run_compare(const RunOptions& options,
                          const std::function<RunHooks(int, const std::string&)>& hooks_for) {
  const TrainConfig& c = options.config;
  if (c.stage1_steps < 1) {
    throw InvalidArgument("stage1_steps", std::to_string(c.stage1_steps), "--compare needs >= 1");
  }
  if (!options.resume.empty()) {
    throw InvalidArgument("resume", options.resume, "cannot be combined with --compare");
  }
  CompareReport out;
  out.tokens_per_run = (c.stage1_steps + c.stage2_steps) * c.seq * c.batch * c.accum;
  out.dense = run_training(dense_arm(options), hooks_for(0, "dense"));
  out.lighthouse = run_training(lighthouse_arm(options), hooks_for(1, "lighthouse"));
  measure_switch(out.lighthouse, c.stage1_steps, &out);
  return out;
}

}  // namespace lighthouse::train
