#include "common/progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace lighthouse::cli {

Progress::Progress(int total, bool quiet)
    : total_(total), quiet_(quiet), tty_(::isatty(STDERR_FILENO) == 1) {}

void Progress::clear_line() {
  if (line_open_) {
    std::fputs("\r\033[K", stderr);
    line_open_ = false;
  }
}

void Progress::step(const std::string& what) {
  ++done_;
  if (quiet_) return;
  // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string&&.
  std::string line = "[";
  line += std::to_string(done_);
  line += '/';
  line += std::to_string(total_);
  line += "] ";
  line += what;
  if (tty_) {
    clear_line();
    std::fputs((line + " ...").c_str(), stderr);
    line_open_ = true;
  } else {
    std::fputs((line + "\n").c_str(), stderr);
  }
  std::fflush(stderr);
}

void Progress::note(const std::string& line) {
  if (quiet_) return;
  clear_line();
  std::fputs((line + "\n").c_str(), stderr);
  std::fflush(stderr);
}

void Progress::finish() {
  clear_line();
  std::fflush(stderr);
}

}  // namespace lighthouse::cli
