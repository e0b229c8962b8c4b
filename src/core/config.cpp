#include "lighthouse/config.hpp"

#include <cmath>
#include <string>

#include "lighthouse/error.hpp"

namespace lighthouse {

namespace {
constexpr const char* kSelectionChoices = "must be original, causal or stride";
constexpr const char* kScorerChoices = "must be norm or dilated";
}  // namespace

const char* selection_name(Selection selection) {
  switch (selection) {
    case Selection::kOriginal:
      return "original";
    case Selection::kCausal:
      return "causal";
    case Selection::kStride:
      return "stride";
  }
  return "invalid";
}

Selection parse_selection(const std::string& text, const std::string& param) {
  if (text == "original") return Selection::kOriginal;
  if (text == "causal") return Selection::kCausal;
  if (text == "stride") return Selection::kStride;
  throw InvalidArgument(param, text, kSelectionChoices);
}

const char* scorer_name(Scorer scorer) {
  switch (scorer) {
    case Scorer::kNorm:
      return "norm";
    case Scorer::kDilated:
      return "dilated";
  }
  return "invalid";
}

Scorer parse_scorer(const std::string& text, const std::string& param) {
  if (text == "norm") return Scorer::kNorm;
  if (text == "dilated") return Scorer::kDilated;
  throw InvalidArgument(param, text, kScorerChoices);
}

void validate(const Config& config) {
  if (config.levels < 1) {
    throw InvalidArgument("levels", std::to_string(config.levels), "must be >= 1");
  }
  // With a single level the pyramid is the sequence itself: pool and topk play no role.
  if (config.levels > 1) {
    if (config.pool < 2 || (config.pool & (config.pool - 1)) != 0) {
      throw InvalidArgument("pool", std::to_string(config.pool), "must be a power of two >= 2");
    }
    if (config.topk <= 0 || config.topk % kTileSize != 0) {
      throw InvalidArgument("topk", std::to_string(config.topk),
                            "must be a positive multiple of the tile size 128");
    }
  }
  if (config.scale && !(std::isfinite(*config.scale) && *config.scale > 0)) {
    throw InvalidArgument("scale", std::to_string(*config.scale), "must be a finite number > 0");
  }
  // An enum can hold any value of its underlying type (a cast from an int, a file).
  if (config.selection != Selection::kOriginal && config.selection != Selection::kCausal &&
      config.selection != Selection::kStride) {
    throw InvalidArgument("selection", std::to_string(static_cast<int>(config.selection)),
                          kSelectionChoices);
  }
  if (config.scorer != Scorer::kNorm && config.scorer != Scorer::kDilated) {
    throw InvalidArgument("scorer", std::to_string(static_cast<int>(config.scorer)),
                          kScorerChoices);
  }
  if (config.dilation < 1) {
    throw InvalidArgument("dilation", std::to_string(config.dilation), "must be >= 1");
  }
}

}  // namespace lighthouse
