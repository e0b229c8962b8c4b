// The CUDA backend: the forward and backward stage lists, as in the CPU backend. What the kernels
// accept is checks.cpp's, what a context keeps context_state.cpp's, where each call's scratch
// lives scratch.cpp's, and memory, copies and timing device.cpp's. Nothing here waits for the
// GPU in forward() or backward() unless the caller asks for stage times or a finiteness check.
//
// Dense (levels == 1). Lighthouse is then plain causal attention over the tokens: cuDNN runs
// directly on the caller's [B, N, H, D] views (no scores, selection, gather or scatter), and the
// context keeps those views and the softmax statistics instead of copies. Not so with a
// ContextBuffer, which must hold everything backward needs: the general path then runs.
#include "cuda/backend.hpp"

#include <cuda_runtime.h>

#include <memory>

#include "cuda/attention.hpp"
#include "cuda/checks.hpp"
#include "cuda/context_state.hpp"
#include "cuda/device.hpp"
#include "cuda/pyramid_dilated.hpp"
#include "cuda/scratch.hpp"
#include "cuda/stage_timer.hpp"
#include "cuda/stages.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cuda {

namespace {

cudaStream_t stream_of(const Options& options) {
  return static_cast<cudaStream_t>(options.stream);
}

// Pyramid, selection, gather, attention and scatter into `state` and `out`.
void forward_stages(const Plan& plan, const TensorView& q, const TensorView& k, const TensorView& v,
                    const TensorView& out, CudaState& state, Workspace& workspace,
                    const Options& options) {
  const Geometry g = make_geometry(plan);
  const DType dtype = q.dtype;
  const cudaStream_t stream = stream_of(options);
  StageTimer timer(options.times, stream);
  const TokenTensor tq = token_tensor(q), tk = token_tensor(k), tv = token_tensor(v);
  const ForwardScratch scratch =
      forward_scratch(g, dtype, q, k, v, out, state.span(), workspace, stream);

  launch_pyramid(g, dtype, tq, tk, tv, scratch.score_q, scratch.score_k, scratch.first_q,
                 scratch.first_k, scratch.coarse[0], scratch.coarse[1], scratch.coarse[2], stream);
  // The dilated scorer replaces the norm scores the pyramid kernel wrote (its coarsest means
  // stay); its cost is the pyramid stage's.
  if (plan.config.scorer == Scorer::kDilated) {
    dilated_scores(plan, g, dtype, q, k, v, scratch.score_q, scratch.score_k, scratch.first_q,
                   scratch.first_k, stream);
  }
  timer.mark(&StageTimes::pyramid);
  // One selection per KV group (per head without grouped-query attention).
  launch_selection(kv_geometry(g), scratch.score_q, scratch.score_k, scratch.first_q,
                   scratch.first_k, state.indices, state.position, stream);
  timer.mark(&StageTimes::selection);
  launch_gather(g, dtype, tq, tk, tv, scratch.coarse[0], scratch.coarse[1], scratch.coarse[2],
                state.indices, state.sel[0], state.sel[1], state.sel[2], stream);
  timer.mark(&StageTimes::gather);
  // The scratch is dead from here on. The forward ignores `deterministic` (only the backward's
  // algorithm depends on it).
  sdpa_forward(gathered_sdpa_desc(g, dtype, plan.scale, true), state.sel[0], state.sel[1],
               state.sel[2], state.sel[3], state.stats, stream);
  timer.mark(&StageTimes::attention);
  launch_scatter(g, dtype, state.position, state.sel[3], token_tensor(out), stream);
  timer.mark(&StageTimes::scatter);
  timer.finish();
}

// Scatter backward (dout -> do_sel), attention backward (-> dq_sel, dk_sel, dv_sel) and gather
// backward (-> dq, dk, dv).
void backward_stages(const Plan& plan, const CudaState& state, const TensorView& dout,
                     const TensorView& dq, const TensorView& dk, const TensorView& dv,
                     Workspace& workspace, const Options& options) {
  const Geometry g = make_geometry(plan);
  const DType dtype = state.dtype();
  const cudaStream_t stream = stream_of(options);
  if (options.check_finite) check_finite("dout", dout, stream);
  StageTimer timer(options.times, stream);
  const bool other_stream = stream != state.stream();
  if (other_stream) stream_wait(stream, state.stream());
  GradientRows rows(g, dtype, dout, dq, dk, dv, state.span(), workspace, stream);

  launch_scatter_backward(g, dtype, state.indices, token_tensor(dout), rows.do_sel(), stream);
  timer.mark(&StageTimes::scatter);
  sdpa_backward(gathered_sdpa_desc(g, dtype, plan.scale, options.deterministic), state.sel[0],
                state.sel[1], state.sel[2], state.sel[3], rows.do_sel(), state.stats, rows.dq_sel(),
                rows.dk_sel(), rows.dv_sel(), stream);
  timer.mark(&StageTimes::attention);
  rows.gather_backward(state.position, dq, dk, dv);
  timer.mark(&StageTimes::gather);
  // The context's buffers are freed on its own stream: that must wait for these reads.
  if (other_stream) stream_wait(state.stream(), stream);
  timer.finish();
}

// Dense attention (levels == 1): cuDNN on the caller's views, nothing else.
std::shared_ptr<ContextState> dense_forward(const Plan& plan, const TensorView& q,
                                            const TensorView& k, const TensorView& v,
                                            const TensorView& out, const Options& options) {
  const cudaStream_t stream = stream_of(options);
  StageTimer timer(options.times, stream);
  auto state = std::make_shared<DenseState>(plan, q.dtype, q, k, v, out, stream);
  sdpa_forward(token_sdpa_desc(plan, q.dtype, q, k, v, out, options.deterministic), q.data, k.data,
               v.data, out.data, state->stats, stream);
  timer.mark(&StageTimes::attention);
  timer.finish();
  return state;
}

void dense_backward(const Plan& plan, const DenseState& state, const TensorView& dout,
                    const TensorView& dq, const TensorView& dk, const TensorView& dv,
                    const Options& options) {
  const cudaStream_t stream = stream_of(options);
  if (options.check_finite) check_finite("dout", dout, stream);
  StageTimer timer(options.times, stream);
  const bool other_stream = stream != state.stream();
  if (other_stream) stream_wait(stream, state.stream());
  SdpaDesc d = token_sdpa_desc(plan, state.dtype(), state.q, state.k, state.v, state.out,
                               options.deterministic);
  d.do_stride = bhsd_strides(dout);
  d.dq_stride = bhsd_strides(dq);
  d.dk_stride = bhsd_strides(dk);
  d.dv_stride = bhsd_strides(dv);
  sdpa_backward(d, state.q.data, state.k.data, state.v.data, state.out.data, dout.data, state.stats,
                dq.data, dk.data, dv.data, stream);
  timer.mark(&StageTimes::attention);
  if (other_stream) stream_wait(state.stream(), stream);  // the stats are freed there
  timer.finish();
}

class CudaBackend final : public CudaDevice {
 public:
  void check_supported(const Plan& plan, DType dtype) const override {
    cuda::check_supported(plan, dtype);
  }

  std::shared_ptr<ContextState> forward(const Plan& plan, const TensorView& q, const TensorView& k,
                                        const TensorView& v, const TensorView& out,
                                        const Options& options) override {
    check_forward_inputs(plan, q, k, v, out, options);
    if (plan.dense()) return dense_forward(plan, q, k, v, out, options);
    auto state = std::make_shared<CudaState>(plan, q.dtype, stream_of(options));
    forward_stages(plan, q, k, v, out, *state, workspace_, options);
    return state;
  }

  // The context in caller memory. Dense attention (levels == 1) takes the general path here, with
  // copies of q, k, v and out, so that the buffer is all backward needs.
  void forward(const Plan& plan, const TensorView& q, const TensorView& k, const TensorView& v,
               const TensorView& out, void* context, const Options& options) override {
    check_forward_inputs(plan, q, k, v, out, options);
    CudaState state(plan, q.dtype, stream_of(options), context);
    forward_stages(plan, q, k, v, out, state, workspace_, options);
  }

  void backward(const Plan& plan, const ContextState& base, const TensorView& dout,
                const TensorView& dq, const TensorView& dk, const TensorView& dv,
                const Options& options) override {
    check_backward_layouts(dout, dq, dk, dv);
    if (const auto* dense = dynamic_cast<const DenseState*>(&base)) {
      dense_backward(plan, *dense, dout, dq, dk, dv, options);
      return;
    }
    const auto* state = dynamic_cast<const CudaState*>(&base);
    if (!state) throw Error("CUDA backward: the context was not produced by the CUDA backend");
    backward_stages(plan, *state, dout, dq, dk, dv, workspace_, options);
  }

  void backward(const Plan& plan, const void* context, const TensorView& dout, const TensorView& dq,
                const TensorView& dk, const TensorView& dv, const Options& options) override {
    check_backward_layouts(dout, dq, dk, dv);
    // A view on this call's stream: the caller orders its memory, nothing is freed here.
    const CudaState state(plan, dout.dtype, stream_of(options), const_cast<void*>(context));
    backward_stages(plan, state, dout, dq, dk, dv, workspace_, options);
  }
};

}  // namespace

std::unique_ptr<Backend> make_backend() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= 0) {
    (void)cudaGetLastError();  // clear the sticky "no device" status
    return nullptr;
  }
  return std::make_unique<CudaBackend>();
}

}  // namespace lighthouse::cuda
