// What `lighthouse train` prints: the progress line of each step (stderr), the events worth a
// line (evaluations, probes, checkpoints), the per-stage summary table and the evaluations at the
// end of a run (stdout), the metrics file (JSONL), and --compare's side-by-side table. The run
// itself (src/train/run.hpp) reports through RunHooks; this file only formats.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "common/progress.hpp"
#include "train/compare.hpp"
#include "train/run.hpp"

namespace lighthouse::cli {

// One run's output. `metrics` is the JSONL file ("" = none), opened at the first record, so that
// a run that fails before it starts leaves no file.
class RunPrinter {
 public:
  RunPrinter(const train::RunOptions& options, std::string metrics, bool quiet);
  // Hooks that print into this printer; it must outlive the run.
  train::RunHooks hooks();

 private:
  void record(const std::string& json);
  void note(const std::string& line);
  void started(const train::RunStart& s);
  void step(const train::StepMetrics& m);
  void evaluated(std::int64_t step, const train::EvalResult& e);
  void leak_probe(std::int64_t step, const train::LeakProbeResult& r);
  void summary(const train::RunReport& r);

  const train::RunOptions& options_;
  std::string metrics_path_;
  bool quiet_;
  std::ofstream metrics_;
  std::unique_ptr<Progress> progress_;
  double recent_ = 0;  // exponential average of the step time, for the ETA
};

// --compare's side-by-side table (dense from scratch, Lighthouse -> dense); `cpu`: the matmul
// rate is a share of the SGEMM (else of the GPU's peak).
void print_comparison(const train::CompareReport& report, bool cpu);

}  // namespace lighthouse::cli
