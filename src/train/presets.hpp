// Named starting points for `lighthouse train --preset NAME`: a model shape and a Lighthouse
// configuration as flag values. Flags given on the command line (or in --config) override them.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace lighthouse::train {

struct Preset {
  std::string name;
  std::string summary;  // one line for --help
  // (flag without the dashes, value), as a user would type them: {"seq", "96k"}.
  std::vector<std::pair<std::string, std::string>> flags;
};

const std::vector<Preset>& presets();
// nullptr when there is no preset of that name.
const Preset* find_preset(const std::string& name);
// "tiny, small, gpu-8x1024, paper-530m" (for error messages).
std::string preset_names();

}  // namespace lighthouse::train
