// Where the GPU's time goes, by kind of work (train/language_model.hpp's WorkTimes): the model
// marks each switch from one kind of launch to another with a CUDA event on its stream, and
// take() adds up the intervals between consecutive marks, each for the kind it began. Nothing
// waits for the GPU until take() (or a fold, every few thousand marks). Host gaps between
// launches count for the kind of work in flight, as they do in a step's wall-clock time.
#pragma once

#include <cuda_runtime.h>

#include <utility>
#include <vector>

#include "train/language_model.hpp"

namespace lighthouse::train::cuda {

enum class Work { kDenseAttention, kLighthouseAttention, kMatmul, kOther };

class WorkTimer {
 public:
  explicit WorkTimer(cudaStream_t stream) : stream_(stream) {}
  ~WorkTimer();
  WorkTimer(const WorkTimer&) = delete;
  WorkTimer& operator=(const WorkTimer&) = delete;

  // Work queued on the stream from now on is of kind `kind`.
  void mark(Work kind);
  // Seconds of each kind since the last take(); waits for the work queued so far.
  WorkTimes take();

 private:
  // Closes the open interval with a new event, waits for it and adds every interval up to it
  // to the totals; the new event starts the next interval (of `next`, unless `close`).
  void fold(bool close);
  cudaEvent_t record();

  cudaStream_t stream_;
  std::vector<std::pair<cudaEvent_t, Work>> marks_;  // in stream order; the last one is open
  std::vector<cudaEvent_t> spare_;                   // created events not in use
  WorkTimes totals_;
};

}  // namespace lighthouse::train::cuda
