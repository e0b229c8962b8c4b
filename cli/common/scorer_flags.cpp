#include "common/scorer_flags.hpp"

#include "common/args.hpp"

namespace lighthouse::cli {

void add_scorer_flags(CLI::App* app, ScorerFlags& flags) {
  app->add_option("--scorer", flags.scorer,
                  "token scores: norm (L2 norms of q and k) or dilated (the original's dilated "
                  "scorer: causal attention within dilation interleaved subsequences, ~4 B H N^2 "
                  "D / dilation FLOPs more)")
      ->capture_default_str()
      ->type_name("SCORER");
  app->add_option("--dilation", flags.dilation,
                  "interleaved subsequences of the dilated scorer (>= 1, dividing the sequence "
                  "length)")
      ->capture_default_str()
      ->type_name("D");
}

void apply_scorer_flags(const ScorerFlags& flags, Config& config) {
  config.scorer = parse_scorer(flags.scorer, "--scorer");
  config.dilation = parse_int32("--dilation", flags.dilation, 1);
}

}  // namespace lighthouse::cli
