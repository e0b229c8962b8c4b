#include "cuda/scratch.hpp"

#include <algorithm>

#include "core/carver.hpp"
#include "cuda/check.hpp"

namespace lighthouse::cuda {

ForwardScratch forward_scratch(const Geometry& g, DType dtype, const TensorView& q,
                               const TensorView& k, const TensorView& v, const TensorView& out,
                               const ByteSpan& context, Workspace& workspace, cudaStream_t stream) {
  const auto bh = static_cast<std::size_t>(g.batch * g.heads);
  const std::size_t score_bytes =
      bh * static_cast<std::size_t>(g.pyramid_size - g.seq) * sizeof(float);
  const std::size_t coarse_bytes =
      g.levels >= 2
          ? bh * static_cast<std::size_t>(g.size[g.levels - 1] * g.head_dim) * dtype_size(dtype)
          : 0;
  const std::size_t first_bytes =
      g.causal && g.levels >= 2 ? bh * static_cast<std::size_t>(g.seq / g.pool) * sizeof(float) : 0;
  Carver carve;
  const std::size_t score_q = carve.take(score_bytes);
  const std::size_t score_k = carve.take(score_bytes);
  const std::size_t first_q = carve.take(first_bytes);
  const std::size_t first_k = carve.take(first_bytes);
  std::array<std::size_t, 3> coarse{};
  for (auto& c : coarse) c = carve.take(coarse_bytes);
  // Dense plans (a ContextBuffer forward of levels == 1) need none: still one aligned part, so
  // that the workspace is never asked for 0 bytes.
  const std::size_t bytes = std::max(carve.size(), Carver::kAlignment);

  char* base = out_holds_scratch(q, k, v, out, context, bytes)
                   ? static_cast<char*>(out.data)
                   : static_cast<char*>(workspace.get(stream, bytes));
  ForwardScratch at;
  at.score_q = reinterpret_cast<float*>(base + score_q);
  at.score_k = reinterpret_cast<float*>(base + score_k);
  if (g.causal) {
    at.first_q = reinterpret_cast<float*>(base + first_q);
    at.first_k = reinterpret_cast<float*>(base + first_k);
  }
  for (int x = 0; x < 3; ++x) at.coarse[x] = base + coarse[x];
  return at;
}

GradientRows::GradientRows(const Geometry& g, DType dtype, const TensorView& dout,
                           const TensorView& dq, const TensorView& dk, const TensorView& dv,
                           const ByteSpan& context, Workspace& workspace, cudaStream_t stream)
    : g_(g), dtype_(dtype), workspace_(workspace), stream_(stream) {
  block_ = static_cast<std::size_t>(g.batch * g.heads * g.S * g.head_dim) * dtype_size(dtype);
  // Grouped-query attention: dk_sel and dv_sel have the KV heads' rows only, and dk, dv are
  // smaller than dq: the blocks stay in the workspace.
  const std::size_t kv_block = block_ / static_cast<std::size_t>(g.group);
  where_ = g.group == 1 ? choose_gradient_scratch(dout, dq, dk, dv, context, block_)
                        : GradientScratch::kWorkspace;
  if (where_ == GradientScratch::kWorkspace) {
    Carver carve;
    std::array<std::size_t, 4> at{};  // do_sel, dq_sel, dk_sel, dv_sel
    for (int i = 0; i < 4; ++i) at[i] = carve.take(i < 2 ? block_ : kv_block);
    char* ws = static_cast<char*>(workspace_.get(stream, carve.size()));
    do_sel_ = ws + at[0];
    dq_sel_ = ws + at[1];
    dk_sel_ = ws + at[2];
    dv_sel_ = ws + at[3];
    return;
  }
  // Stream order makes each reuse safe: a block is dead before the launch that overwrites its
  // memory is queued (gather_backward() says which), and the caller's dout and the context share
  // no byte with dq, dk and dv (choose_gradient_scratch).
  const bool two = where_ == GradientScratch::kTwoBlocks;
  char* const q_mem = static_cast<char*>(dq.data);
  char* const k_mem = static_cast<char*>(dk.data);
  char* const v_mem = static_cast<char*>(dv.data);
  ws_ = two ? nullptr : static_cast<char*>(workspace_.get(stream, block_));
  do_sel_ = q_mem;
  dq_sel_ = k_mem;
  dk_sel_ = two ? static_cast<void*>(v_mem) : ws_;
  dv_sel_ = two ? k_mem + block_ : static_cast<void*>(v_mem);
}

void GradientRows::gather_backward(const std::int32_t* position, const TensorView& dq,
                                   const TensorView& dk, const TensorView& dv) {
  if (where_ == GradientScratch::kWorkspace && g_.group == 1) {
    launch_gather_backward(g_, dtype_, position, dq_sel_, dk_sel_, dv_sel_, token_tensor(dq),
                           token_tensor(dk), token_tensor(dv), stream_);
    return;
  }
  if (where_ ==
      GradientScratch::kWorkspace) {  // grouped-query: dq per query head, dk, dv per KV head
    const Geometry kv = kv_geometry(g_);
    launch_gather_backward(g_, dtype_, position, dq_sel_, token_tensor(dq), stream_);
    launch_gather_backward(kv, dtype_, position, dk_sel_, token_tensor(dk), stream_);
    launch_gather_backward(kv, dtype_, position, dv_sel_, token_tensor(dv), stream_);
    return;
  }
  // do_sel (in dq) died with the attention backward.
  launch_gather_backward(g_, dtype_, position, dq_sel_, token_tensor(dq), stream_);
  if (where_ == GradientScratch::kTwoBlocks) {
    // dv_sel must leave dk before dk is written: to cuDNN's workspace, idle until the next
    // attention call, when it is large enough (the fast backward's holds an fp32 dQ
    // accumulator: two blocks of 16-bit rows), else to the workspace (nothing live there).
    WorkspaceLoan loan(block_, stream_);
    void* staged = loan.get() ? loan.get() : workspace_.get(stream_, block_);
    CUDA_CHECK(cudaMemcpyAsync(staged, dv_sel_, block_, cudaMemcpyDeviceToDevice, stream_));
    // dk holds dead blocks only: dq_sel (read above) and dv_sel (copied).
    launch_gather_backward(g_, dtype_, position, dk_sel_, token_tensor(dk), stream_);
    // dv holds dk_sel, read above.
    launch_gather_backward(g_, dtype_, position, staged, token_tensor(dv), stream_);
  } else {
    // dk holds dq_sel, read above; dk_sel is in the workspace.
    launch_gather_backward(g_, dtype_, position, dk_sel_, token_tensor(dk), stream_);
    // dv_sel leaves dv for the workspace, free since dk_sel was read from it.
    CUDA_CHECK(cudaMemcpyAsync(ws_, dv_sel_, block_, cudaMemcpyDeviceToDevice, stream_));
    launch_gather_backward(g_, dtype_, position, ws_, token_tensor(dv), stream_);
  }
}

}  // namespace lighthouse::cuda
