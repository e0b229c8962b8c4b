// The subcommands of `lighthouse`, one file each (cli/commands/). A subcommand registers its flags
// on the parent CLI11 app and returns the function that runs it once the command line has been
// parsed.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace lighthouse::cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;  // returns the exit status; throws InvalidArgument / Error
};

Command add_attention_command(CLI::App& parent);  // commands/attention.cpp
Command add_plan_command(CLI::App& parent);       // commands/plan.cpp
Command add_bench_command(CLI::App& parent);      // commands/bench.cpp
Command add_train_command(CLI::App& parent);      // commands/train.cpp
Command add_plot_command(CLI::App& parent);       // commands/plot.cpp
Command add_leak_test_command(CLI::App& parent);  // commands/leak_test.cpp

}  // namespace lighthouse::cli
