// `--config FILE`: a JSON object whose keys are a subcommand's flag names ("stage1-steps": 80,
// "untied": true, "data": ["a.txt", "b.txt"]), applied after the command line was parsed to every
// flag the command line did not give, so that flags override the file.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace lighthouse::cli {

// Throws InvalidArgument("--config", path, ...) when the file cannot be read, is not a JSON
// object, names a key that is not a flag of `app` (or is "config" itself), or gives a value of the
// wrong kind (a flag wants true/false, other options a number, string or, for lists, an array).
// Values are then checked like typed flags by the command itself.
void apply_json_config(CLI::App& app, const std::string& path);

}  // namespace lighthouse::cli
