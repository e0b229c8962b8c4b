// `lighthouse`: the command-line front end of the library. main() only parses, dispatches and
// turns exceptions into the documented exit statuses:
//   0 success, 1 runtime failure (lighthouse::Error), 2 bad usage or input (InvalidArgument, or
//   train::CheckpointError: a truncated, corrupted or mismatched checkpoint).
// Every error is one line on stderr: "lighthouse <cmd>: error: --<flag> = <value>: <rule>".
#include <exception>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/args.hpp"
#include "common/commands.hpp"
#include "lighthouse/error.hpp"
#include "lighthouse/version.hpp"
#include "train/safetensors.hpp"

namespace {

using lighthouse::cli::Command;

std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

// The library names parameters as in the API ("topk", "head_dim"); when the subcommand has a
// flag of that name, say it the way the user typed it ("--topk", "--head-dim").
std::string usage_message(const lighthouse::InvalidArgument& e, const CLI::App& sub) {
  std::string param = e.param();
  if (param.rfind("-", 0) != 0) {
    std::string flag = "--" + param;
    for (char& c : flag) {
      if (c == '_') c = '-';
    }
    if (sub.get_option_no_throw(flag) != nullptr) param = flag;
  }
  return param + " = " + e.value() + ": " + e.rule();
}

// The subcommand named on the command line, if any (used to prefix parse errors).
const Command* named_command(int argc, char** argv, const std::vector<Command>& commands) {
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.rfind("-", 0) == 0) continue;
    for (const Command& c : commands) {
      if (c.app->get_name() == word) return &c;
    }
    return nullptr;
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lighthouse::cli;
  CLI::App app{
      "Lighthouse attention: selection-based hierarchical attention for training.\n"
      "Run `lighthouse <command> --help` for the flags of a command.",
      "lighthouse"};
  app.set_version_flag("--version", std::string("lighthouse ") + lighthouse::kVersion);
  app.require_subcommand(0, 1);
  // Unknown words are collected and reported below in the one-line error format.
  app.allow_extras();

  std::vector<Command> commands;
  commands.push_back(add_attention_command(app));
  commands.push_back(add_plan_command(app));
  commands.push_back(add_bench_command(app));
  commands.push_back(add_train_command(app));
  commands.push_back(add_plot_command(app));
  commands.push_back(add_leak_test_command(app));
  for (Command& c : commands) c.app->allow_extras();

  const Command* named = named_command(argc, argv, commands);
  const std::string prefix =
      named ? "lighthouse " + named->app->get_name() + ": error: " : "lighthouse: error: ";
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << prefix << one_line(e.what()) << "\n";
    return kExitUsage;
  }

  const Command* selected = nullptr;
  for (const Command& c : commands) {
    if (c.app->parsed()) selected = &c;
  }
  if (!selected) {
    if (!app.remaining().empty()) {
      const std::string word = app.remaining().front();
      std::cerr
          << "lighthouse: error: " << one_line(word)
          << (word.rfind("-", 0) == 0 ? ": unknown option" : ": unknown command")
          << " (commands: attention, plan, bench, train, plot, leak-test; see lighthouse --help)\n";
    } else {
      std::cerr << app.help() << "lighthouse: error: a command is required\n";
    }
    return kExitUsage;
  }
  const std::string name = selected->app->get_name();
  if (!selected->app->remaining().empty()) {
    const std::string word = selected->app->remaining().front();
    std::cerr << prefix << one_line(word)
              << (word.rfind("-", 0) == 0 ? ": unknown option" : ": unexpected argument")
              << " (see lighthouse " << name << " --help)\n";
    return kExitUsage;
  }

  try {
    return selected->run();
  } catch (const lighthouse::InvalidArgument& e) {
    std::cerr << prefix << one_line(usage_message(e, *selected->app)) << "\n";
    return kExitUsage;
  } catch (const lighthouse::train::CheckpointError& e) {  // a bad input file, not a failure
    std::cerr << prefix << one_line(e.what()) << "\n";
    return kExitUsage;
  } catch (const lighthouse::Error& e) {
    std::cerr << prefix << one_line(e.what()) << "\n";
    return kExitRuntime;
  } catch (const std::bad_alloc&) {
    std::cerr << prefix << "out of host memory\n";
    return kExitRuntime;
  } catch (const std::exception& e) {
    std::cerr << prefix << one_line(e.what()) << "\n";
    return kExitRuntime;
  }
}
