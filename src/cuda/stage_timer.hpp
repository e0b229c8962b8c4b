// Per-stage times of one call (Options::times): CUDA events recorded on the call's stream between
// the stages; finish() waits for the last one. Inactive (no events, no waits) when no times were
// asked for.
#pragma once

#include <cuda_runtime.h>

#include <array>

#include "cuda/check.hpp"
#include "lighthouse/attention.hpp"

namespace lighthouse::cuda {

class StageTimer {
 public:
  StageTimer(StageTimes* times, cudaStream_t stream) : times_(times), stream_(stream) {
    if (!times_) return;
    *times_ = StageTimes{};
    for (auto& e : events_) CUDA_CHECK(cudaEventCreate(&e));
    CUDA_CHECK(cudaEventRecord(events_[0], stream_));
  }
  StageTimer(const StageTimer&) = delete;
  StageTimer& operator=(const StageTimer&) = delete;
  ~StageTimer() {
    for (auto e : events_) {
      if (e) cudaEventDestroy(e);
    }
  }
  // The work queued since the previous mark is the stage `field`.
  void mark(double StageTimes::*field) {
    if (!times_) return;
    fields_[marks_++] = field;
    CUDA_CHECK(cudaEventRecord(events_[marks_], stream_));
  }
  void finish() {
    if (!times_) return;
    CUDA_CHECK(cudaEventSynchronize(events_[marks_]));
    for (int i = 0; i < marks_; ++i) {
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
      times_->*fields_[i] += ms;
    }
  }

 private:
  StageTimes* times_;
  cudaStream_t stream_;
  std::array<cudaEvent_t, 6> events_{};
  std::array<double StageTimes::*, 5> fields_{};
  int marks_ = 0;
};

}  // namespace lighthouse::cuda
