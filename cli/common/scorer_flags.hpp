// The scorer flags that attention, plan, bench and train share: --scorer norm|dilated and
// --dilation (Config::scorer, Config::dilation).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "lighthouse/config.hpp"

namespace lighthouse::cli {

struct ScorerFlags {
  std::string scorer = "norm", dilation = "4";
};

// Registers --scorer and --dilation on `app`, writing into `flags` (which must outlive it).
void add_scorer_flags(CLI::App* app, ScorerFlags& flags);

// Parses the two flags into config.scorer and config.dilation (InvalidArgument naming the flag).
void apply_scorer_flags(const ScorerFlags& flags, Config& config);

}  // namespace lighthouse::cli
