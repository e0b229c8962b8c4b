#include "cuda/side_stream.hpp"

#include <cstdlib>
#include <string>

#include "cuda/check.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cuda {

SideLanes::~SideLanes() {
  // At exit the runtime may be gone already: nothing to report.
  for (auto& entry : lanes_) {
    for (cudaEvent_t e : entry.second.events) cudaEventDestroy(e);
    if (entry.second.stream) cudaStreamDestroy(entry.second.stream);
  }
}

SideLane& SideLanes::get(cudaStream_t main, std::size_t events) {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex_);
  SideLane& lane = lanes_[{device, main}];
  if (!lane.stream) {
    CUDA_CHECK(
        cudaStreamCreateWithPriority(&lane.stream, cudaStreamNonBlocking, side_stream_priority()));
  }
  while (lane.events.size() < events) {
    cudaEvent_t e = nullptr;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    lane.events.push_back(e);
  }
  return lane;
}

int side_stream_priority() {
  const char* name = "LIGHTHOUSE_CUDA_SIDE_PRIORITY";
  const char* text = std::getenv(name);
  const std::string value = text ? text : "high";
  if (value == "normal") return 0;
  if (value != "high") throw InvalidArgument(name, value, "must be high or normal");
  int least = 0, greatest = 0;
  CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  return greatest;
}

}  // namespace lighthouse::cuda
