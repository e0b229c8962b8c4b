#include "common/json_config.hpp"

#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/args.hpp"

namespace lighthouse::cli {

namespace {

// A scalar JSON value as the text a user would type after the flag.
std::string scalar_text(const std::string& path, const std::string& key, const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer() || v.is_number_unsigned() || v.is_number_float()) return v.dump();
  reject("--config", path,
         "key \"" + key + "\" has value " + v.dump() + "; expected a number or a string");
}

}  // namespace

void apply_json_config(CLI::App& app, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) reject("--config", path, "cannot open the file for reading");
  std::ostringstream text;
  text << in.rdbuf();
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    reject("--config", path, std::string("not valid JSON: ") + e.what());
  }
  if (!config.is_object()) reject("--config", path, "must hold one JSON object of flag: value");
  for (const auto& [raw_key, value] : config.items()) {
    std::string key = raw_key.rfind("--", 0) == 0 ? raw_key.substr(2) : raw_key;
    CLI::Option* opt =
        key == "config" || key == "help" ? nullptr : app.get_option_no_throw("--" + key);
    if (opt == nullptr) {
      reject("--config", path,
             "unknown key \"" + raw_key + "\" (keys are the flags of lighthouse " + app.get_name() +
                 " without the dashes, e.g. \"stage1-steps\")");
    }
    if (opt->count() > 0) continue;      // the command line overrides the file
    if (opt->get_expected_max() == 0) {  // a flag
      if (!value.is_boolean()) {
        reject("--config", path,
               "key \"" + raw_key + "\" is a flag and wants true or false, not " + value.dump());
      }
      if (!value.get<bool>()) continue;
      opt->add_result("true");
    } else if (value.is_array()) {
      if (opt->get_items_expected_max() <= 1) {
        // A list flag written as text ("0,1,4,5") may also be given as an array.
        std::string joined;
        for (const auto& item : value) {
          joined += (joined.empty() ? "" : ",") + scalar_text(path, raw_key, item);
        }
        opt->add_result(joined);
      } else {
        std::vector<std::string> items;
        for (const auto& item : value) items.push_back(scalar_text(path, raw_key, item));
        opt->add_result(items);
      }
    } else {
      opt->add_result(scalar_text(path, raw_key, value));
    }
    opt->run_callback();
  }
}

}  // namespace lighthouse::cli
