// Running the `lighthouse` binary as a user would (a shell command, files in a temporary folder),
// for the CLI tests. LIGHTHOUSE_CLI_PATH is the binary, set by tests/CMakeLists.txt.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

namespace lhtest {

struct CliResult {
  int status = -1;  // the exit status, -1 when the process did not exit normally
  std::string out, err;
};

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A fresh folder under the system temp dir, removed with everything in it at the end.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "lighthouse-cli-test") {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Runs `lighthouse <args>` through the shell with stdin closed, capturing stdout and stderr
// through files in `dir` (removed afterwards). `env`: variable assignments put before the
// command ("OPENBLAS_NUM_THREADS=2").
inline CliResult run_cli(const std::filesystem::path& dir, const std::string& args,
                         const std::string& env = "") {
  const std::string out = (dir / ".stdout").string(), err = (dir / ".stderr").string();
  const std::string command = env + " '" + LIGHTHOUSE_CLI_PATH + "' " + args + " > '" + out +
                              "' 2> '" + err + "' < /dev/null";
  const int raw = std::system(command.c_str());
  CliResult r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

}  // namespace lhtest
