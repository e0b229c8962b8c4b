#include "train/compare.hpp"

#include <algorithm>
#include <sstream>

#include "lighthouse/error.hpp"

namespace lighthouse::train {

const char* arm_name(Arm arm) {
  switch (arm) {
    case Arm::kDense:
      return "dense";
    case Arm::kOriginal:
      return "original";
    case Arm::kCausal:
      return "causal";
    case Arm::kStride:
      return "stride";
  }
  return "?";
}

std::vector<Arm> parse_arms(const std::string& text, const std::string& param) {
  const std::string rule =
      "a comma-separated list of distinct arms: dense, original, causal, stride";
  std::vector<Arm> arms;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    Arm arm;
    if (item == "dense") {
      arm = Arm::kDense;
    } else if (item == "original") {
      arm = Arm::kOriginal;
    } else if (item == "causal") {
      arm = Arm::kCausal;
    } else if (item == "stride") {
      arm = Arm::kStride;
    } else {
      throw InvalidArgument(param, text, rule);
    }
    if (std::find(arms.begin(), arms.end(), arm) != arms.end()) {
      throw InvalidArgument(param, text, rule);
    }
    arms.push_back(arm);
  }
  if (arms.empty() || text.back() == ',') throw InvalidArgument(param, text, rule);
  return arms;
}

const ArmReport* CompareReport::find(Arm arm) const {
  for (const ArmReport& a : arms) {
    if (a.arm == arm) return &a;
  }
  return nullptr;
}

RunOptions arm_options(const RunOptions& options, Arm arm) {
  RunOptions o = options;
  if (arm == Arm::kDense) {
    o.config.stage1_steps = 0;
    o.config.stage2_steps = options.config.stage1_steps + options.config.stage2_steps;
    o.leak_probe = false;
  } else {
    o.config.lighthouse.selection = arm == Arm::kCausal   ? Selection::kCausal
                                    : arm == Arm::kStride ? Selection::kStride
                                                          : Selection::kOriginal;
    o.leak_probe = true;
  }
  if (!options.save.empty()) o.save = options.save + "/" + arm_name(arm);
  return o;
}

void measure_switch(const RunReport& lighthouse, std::int64_t stage1_steps, ArmReport* out) {
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

CompareReport run_compare(const RunOptions& options, const std::vector<Arm>& arms,
                          const std::function<RunHooks(int, Arm)>& hooks_for) {
  const TrainConfig& c = options.config;
  if (c.stage1_steps < 1) {
    throw InvalidArgument("stage1_steps", std::to_string(c.stage1_steps), "--compare needs >= 1");
  }
  if (!options.resume.empty()) {
    throw InvalidArgument("resume", options.resume, "cannot be combined with --compare");
  }
  if (arms.empty()) throw InvalidArgument("arms", "", "--compare needs at least one arm");
  CompareReport out;
  out.tokens_per_run = (c.stage1_steps + c.stage2_steps) * c.seq * c.batch * c.accum;
  for (std::size_t i = 0; i < arms.size(); ++i) {
    ArmReport a;
    a.arm = arms[i];
    a.report = run_training(arm_options(options, arms[i]), hooks_for(static_cast<int>(i), arms[i]));
    if (arms[i] != Arm::kDense) measure_switch(a.report, c.stage1_steps, &a);
    out.arms.push_back(std::move(a));
  }
  return out;
}

}  // namespace lighthouse::train
