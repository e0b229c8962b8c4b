#include "cuda/forward_stages.hpp"

#include <algorithm>

#include "core/carver.hpp"

namespace lighthouse::cuda {

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

ForwardScratch forward_scratch(const Geometry& g, DType dtype) {
  const auto bh = static_cast<std::size_t>(g.batch * g.heads);
  const std::size_t score_bytes =
      bh * static_cast<std::size_t>(g.pyramid_size - g.seq) * sizeof(float);
  const std::size_t coarse_bytes =
      g.levels >= 2
          ? bh * static_cast<std::size_t>(g.size[g.levels - 1] * g.head_dim) * dtype_size(dtype)
          : 0;
  const std::size_t first_bytes =
      g.causal && g.levels >= 2 ? bh * static_cast<std::size_t>(g.seq / g.pool) * sizeof(float) : 0;
  ForwardScratch at;
  Carver carve;
  at.score_q = carve.take(score_bytes);
  at.score_k = carve.take(score_bytes);
  at.first_q = carve.take(first_bytes);
  at.first_k = carve.take(first_bytes);
  for (auto& c : at.coarse) c = carve.take(coarse_bytes);
  // Dense plans (a ContextBuffer forward of levels == 1) need none: still one aligned part, so
  // that the workspace is never asked for 0 bytes.
  at.bytes = std::max(carve.size(), Carver::kAlignment);
  return at;
}

void run_forward(const ForwardProblem& p, double scale, char* scratch, cudaStream_t stream,
                 StageTimer& timer) {
  const ForwardScratch at = forward_scratch(p.g, p.dtype);
  auto* score_q = reinterpret_cast<float*>(scratch + at.score_q);
  auto* score_k = reinterpret_cast<float*>(scratch + at.score_k);
  auto* first_q = p.g.causal ? reinterpret_cast<float*>(scratch + at.first_q) : nullptr;
  auto* first_k = p.g.causal ? reinterpret_cast<float*>(scratch + at.first_k) : nullptr;
  char* coarse[3] = {scratch + at.coarse[0], scratch + at.coarse[1], scratch + at.coarse[2]};
  launch_pyramid(p.g, p.dtype, p.q, p.k, p.v, score_q, score_k, first_q, first_k, coarse[0],
                 coarse[1], coarse[2], stream);
  timer.mark(&StageTimes::pyramid);
  launch_selection(p.g, score_q, score_k, first_q, first_k, p.indices, p.inverse, stream);
  timer.mark(&StageTimes::selection);
  launch_gather(p.g, p.dtype, p.q, p.k, p.v, coarse[0], coarse[1], coarse[2], p.indices, p.sel[0],
                p.sel[1], p.sel[2], stream);
  timer.mark(&StageTimes::gather);
  // The scratch is dead from here on. The forward ignores `deterministic` (only the backward's
  // algorithm depends on it).
  sdpa_forward(gathered_sdpa_desc(p.g, p.dtype, scale, true), p.sel[0], p.sel[1], p.sel[2],
               p.sel[3], p.stats, stream);
  timer.mark(&StageTimes::attention);
  launch_scatter(p.g, p.dtype, p.inverse, p.sel[3], p.out, stream);
  timer.mark(&StageTimes::scatter);
}

}  // namespace lighthouse::cuda
