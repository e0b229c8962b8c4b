// The subcommands of `lighthouse`, one file each. A subcommand registers its flags on the parent
// CLI11 app and returns the function that runs it once the command line has been parsed.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace lighthouse::cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;  // returns the exit status; throws InvalidArgument / Error
};

Command add_attention_command(CLI::App& parent);  // attention_cmd.cpp
Command add_plan_command(CLI::App& parent);       // plan_cmd.cpp
Command add_bench_command(CLI::App& parent);      // bench_cmd.cpp
Command add_train_command(CLI::App& parent);      // commands/train.cpp
Command add_plot_command(CLI::App& parent);       // plot_cmd.cpp

}  // namespace lighthouse::cli
