#include "train/cuda/work_timer.hpp"

#include "cuda/check.hpp"

namespace lighthouse::train::cuda {

namespace {
constexpr std::size_t kFoldAt = 4096;  // marks kept before waiting for the GPU to add them up

double& slot(WorkTimes& t, Work kind) {
  switch (kind) {
    case Work::kDenseAttention:
      return t.dense_attention;
    case Work::kLighthouseAttention:
      return t.lighthouse_attention;
    case Work::kMatmul:
      return t.matmul;
    case Work::kOther:
      break;
  }
  return t.other;
}
}  // namespace

WorkTimer::~WorkTimer() {
  for (auto& mark : marks_) cudaEventDestroy(mark.first);
  for (cudaEvent_t e : spare_) cudaEventDestroy(e);
}

cudaEvent_t WorkTimer::record() {
  cudaEvent_t event = nullptr;
  if (spare_.empty()) {
    CUDA_CHECK(cudaEventCreate(&event));
  } else {
    event = spare_.back();
    spare_.pop_back();
  }
  const cudaError_t status = cudaEventRecord(event, stream_);
  if (status != cudaSuccess) spare_.push_back(event);
  CUDA_CHECK(status);
  return event;
}

void WorkTimer::mark(Work kind) {
  if (!marks_.empty() && marks_.back().second == kind) return;
  if (marks_.size() >= kFoldAt) fold(false);
  if (!marks_.empty() && marks_.back().second == kind) return;
  marks_.emplace_back(record(), kind);
}

void WorkTimer::fold(bool close) {
  if (marks_.empty()) return;
  const cudaEvent_t end = record();
  CUDA_CHECK(cudaEventSynchronize(end));
  for (std::size_t i = 0; i < marks_.size(); ++i) {
    const cudaEvent_t to = i + 1 < marks_.size() ? marks_[i + 1].first : end;
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, marks_[i].first, to));
    slot(totals_, marks_[i].second) += ms * 1e-3;
  }
  const Work open = marks_.back().second;
  for (auto& mark : marks_) spare_.push_back(mark.first);
  marks_.clear();
  if (close) {
    spare_.push_back(end);
  } else {
    marks_.emplace_back(end, open);
  }
}

WorkTimes WorkTimer::take() {
  fold(true);
  const WorkTimes out = totals_;
  totals_ = {};
  return out;
}

}  // namespace lighthouse::train::cuda
