#include "cuda/forward_stages.hpp"

#include "cuda/check.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cuda {

namespace {

constexpr std::size_t kAlign = 256;

std::size_t aligned(std::size_t bytes) {
  return (bytes + kAlign - 1) / kAlign * kAlign;
}

TokenTensor advanced(const TokenTensor& t, std::int64_t b, std::int64_t h0, std::size_t element) {
  TokenTensor r = t;
  r.data = static_cast<char*>(t.data) +
           static_cast<std::ptrdiff_t>((b * t.sb + h0 * t.sh) * static_cast<std::int64_t>(element));
  return r;
}

// Pyramid, selection and gather of `p` (the scratch is dead afterwards).
void prepare(const ForwardProblem& p, char* scratch, cudaStream_t stream, StageTimer* timer) {
  const ForwardScratch at = forward_scratch(p.g, p.dtype);
  auto* score_q = reinterpret_cast<float*>(scratch + at.score_q);
  auto* score_k = reinterpret_cast<float*>(scratch + at.score_k);
  char* coarse[3] = {scratch + at.coarse[0], scratch + at.coarse[1], scratch + at.coarse[2]};
  launch_pyramid(p.g, p.dtype, p.q, p.k, p.v, score_q, score_k, coarse[0], coarse[1], coarse[2],
                 stream);
  if (timer) timer->mark(&StageTimes::pyramid);
  launch_selection(p.g, score_q, score_k, p.indices, p.inverse, stream);
  if (timer) timer->mark(&StageTimes::selection);
  launch_gather(p.g, p.dtype, p.q, p.k, p.v, coarse[0], coarse[1], coarse[2], p.indices, p.sel[0],
                p.sel[1], p.sel[2], stream);
  if (timer) timer->mark(&StageTimes::gather);
}

void attend(const ForwardProblem& p, double scale, cudaStream_t stream) {
  // The forward ignores `deterministic` (only the backward's algorithm depends on it).
  sdpa_forward(gathered_sdpa_desc(p.g, p.dtype, scale, true), p.sel[0], p.sel[1], p.sel[2],
               p.sel[3], p.stats, stream);
}

void scatter(const ForwardProblem& p, cudaStream_t stream) {
  launch_scatter(p.g, p.dtype, p.inverse, p.sel[3], p.out, stream);
}

void record(cudaEvent_t event, cudaStream_t stream) {
  CUDA_CHECK(cudaEventRecord(event, stream));
}
void wait(cudaStream_t stream, cudaEvent_t event) {
  CUDA_CHECK(cudaStreamWaitEvent(stream, event, 0));
}

}  // namespace

SdpaDesc gathered_sdpa_desc(const Geometry& g, DType dtype, double scale, bool deterministic) {
  SdpaDesc d;
  d.deterministic = deterministic;
  d.b = g.batch;
  d.h = g.heads;
  d.s = g.S;
  d.d = g.head_dim;
  d.dtype = dtype;
  d.scale = scale;
  const std::array<std::int64_t, 4> contiguous{g.heads * g.S * g.head_dim, g.S * g.head_dim,
                                               g.head_dim, 1};
  d.q_stride = d.k_stride = d.v_stride = d.o_stride = contiguous;
  return d;
}

ForwardProblem group_problem(const ForwardProblem& whole, const HeadGroup& unit) {
  const Geometry& g = whole.g;
  if (unit.batch < 0 || unit.batch >= g.batch || unit.head0 < 0 || unit.heads < 1 ||
      unit.head0 + unit.heads > g.heads) {
    throw Error("group_problem: heads [" + std::to_string(unit.head0) + ", " +
                std::to_string(unit.head0 + unit.heads) + ") of batch " +
                std::to_string(unit.batch) + " lie outside the problem's " +
                std::to_string(g.batch) + " x " + std::to_string(g.heads));
  }
  const std::int64_t bh0 = unit.batch * g.heads + unit.head0;
  const std::size_t element = dtype_size(whole.dtype);
  ForwardProblem p = whole;
  p.g.batch = 1;
  p.g.heads = unit.heads;
  p.q = advanced(whole.q, unit.batch, unit.head0, element);
  p.k = advanced(whole.k, unit.batch, unit.head0, element);
  p.v = advanced(whole.v, unit.batch, unit.head0, element);
  p.out = advanced(whole.out, unit.batch, unit.head0, element);
  p.indices = whole.indices + bh0 * g.S;
  p.inverse = whole.inverse + bh0 * g.pyramid_size;
  p.stats = whole.stats + bh0 * g.S;
  const auto rows = static_cast<std::ptrdiff_t>(bh0 * g.S * g.head_dim * element);
  for (int i = 0; i < 4; ++i) p.sel[i] = static_cast<char*>(whole.sel[i]) + rows;
  return p;
}

ForwardScratch forward_scratch(const Geometry& g, DType dtype) {
  const auto bh = static_cast<std::size_t>(g.batch * g.heads);
  const std::size_t score_bytes =
      bh * static_cast<std::size_t>(g.pyramid_size - g.seq) * sizeof(float);
  const std::size_t coarse_bytes =
      g.levels >= 2
          ? bh * static_cast<std::size_t>(g.size[g.levels - 1] * g.head_dim) * dtype_size(dtype)
          : 0;
  ForwardScratch at;
  std::size_t size = 0;
  auto take = [&](std::size_t bytes) {
    const std::size_t offset = size;
    size += aligned(bytes);
    return offset;
  };
  at.score_q = take(score_bytes);
  at.score_k = take(score_bytes);
  for (auto& c : at.coarse) c = take(coarse_bytes);
  at.bytes = size > 0 ? size : kAlign;
  return at;
}

void run_forward(const ForwardProblem& p, double scale, char* scratch, cudaStream_t stream,
                 StageTimer& timer) {
  prepare(p, scratch, stream, &timer);
  attend(p, scale, stream);
  timer.mark(&StageTimes::attention);
  scatter(p, stream);
  timer.mark(&StageTimes::scatter);
}

void run_forward_pipelined(const ForwardProblem& whole, const std::vector<HeadGroup>& units,
                           double scale, char* scratch, cudaStream_t main, SideLane& lane) {
  const std::size_t n = units.size();
  if (n < 2 || lane.events.size() < 2 * n + 2) {
    throw Error("run_forward_pipelined: " + std::to_string(n) + " units and " +
                std::to_string(lane.events.size()) + " events (needs >= 2 units, 2 n + 2 events)");
  }
  std::vector<ForwardProblem> problems;
  problems.reserve(n);
  for (const HeadGroup& u : units) problems.push_back(group_problem(whole, u));
  const cudaStream_t side = lane.stream;
  cudaEvent_t* const start = &lane.events[0];
  cudaEvent_t* const done = &lane.events[1];
  cudaEvent_t* const ready = &lane.events[2];         // [n]: unit i gathered (side)
  cudaEvent_t* const attended = &lane.events[2 + n];  // [n]: unit i's attention done (main)

  // A wait names the record issued last before it on the host, so every record below precedes
  // its wait in program order; a reused event's older records no longer matter.
  record(*start, main);
  wait(side, *start);
  try {
    for (std::size_t i = 0; i < n; ++i) {
      prepare(problems[i], scratch, side, nullptr);
      record(ready[i], side);
    }
    for (std::size_t i = 0; i < n; ++i) {
      wait(main, ready[i]);
      attend(problems[i], scale, main);
      record(attended[i], main);
      wait(side, attended[i]);
      scatter(problems[i], side);
    }
  } catch (...) {
    // Whatever was queued on the side stream still uses the context and the scratch: `main`
    // (where the context is freed) must not run ahead of it.
    if (cudaEventRecord(*done, side) == cudaSuccess) cudaStreamWaitEvent(main, *done, 0);
    throw;
  }
  record(*done, side);
  wait(main, *done);
}

}  // namespace lighthouse::cuda
