// A second stream next to a caller's stream, for the pipelined forward (forward_stages.hpp), and
// the events that order the two. Created on first use per (device, caller stream) and kept:
// creating streams and events costs microseconds and can synchronise, a forward should not.
//
// Priority: LIGHTHOUSE_CUDA_SIDE_PRIORITY = high (default: the device's greatest priority, so
// that the memory-bound stage kernels get SMs as soon as the attention's blocks retire) or
// normal (the default priority of a stream). Read when a side stream is created, i.e. once per
// process and caller stream: set it before the first call.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

namespace lighthouse::cuda {

struct SideLane {
  cudaStream_t stream = nullptr;    // non-blocking: no implicit order with the legacy stream
  std::vector<cudaEvent_t> events;  // timing disabled
};

class SideLanes {
 public:
  SideLanes() = default;
  SideLanes(const SideLanes&) = delete;
  SideLanes& operator=(const SideLanes&) = delete;
  ~SideLanes();

  // The lane of `main` on the current device, with at least `events` events. Like the
  // workspace, a lane serves one call at a time: calls on one stream must not be issued from
  // several host threads at once (the events are reused by the next call).
  SideLane& get(cudaStream_t main, std::size_t events);

 private:
  std::mutex mutex_;
  std::map<std::pair<int, cudaStream_t>, SideLane> lanes_;
};

// The priority a new side stream gets (see above); throws InvalidArgument on an unknown value.
int side_stream_priority();

}  // namespace lighthouse::cuda
