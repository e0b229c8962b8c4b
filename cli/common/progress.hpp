// Progress of a long run on stderr. On a terminal, one line rewritten in place
// ("[3/14] lighthouse N=65536 ..."), cleared at the end; otherwise one plain line per step, which
// reads well in a log. Quiet mode prints nothing. stdout is never touched.
#pragma once

#include <string>

namespace lighthouse::cli {

class Progress {
 public:
  Progress(int total, bool quiet);
  ~Progress() { finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void step(const std::string& what);  // starts step number (previous + 1)
  void note(const std::string& line);  // a message that must stay visible (not in quiet mode)
  void finish();

 private:
  void clear_line();

  int total_;
  int done_ = 0;
  bool quiet_;
  bool tty_;
  bool line_open_ = false;
};

}  // namespace lighthouse::cli
