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
#include "cuda/check.hpp"
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

  // ---- context parallelism: the stages of one chunk (backend.hpp) ----------------------------
  void chunk_select_gather(const Plan& plan, const TensorView& q, const TensorView& k,
                           const TensorView& v, std::int32_t* indices, std::int32_t* position,
                           void* q_sel, void* k_sel, void* v_sel, const Options& options) override {
    check_layout("q", q);
    check_layout("k", k);
    check_layout("v", v);
    const Geometry g = make_geometry(plan);
    const cudaStream_t stream = stream_of(options);
    StageTimer timer(options.times, stream);
    const TokenTensor tq = token_tensor(q), tk = token_tensor(k), tv = token_tensor(v);
    // The scratch in the workspace: no output buffer of this call may hold it.
    TensorView none;
    none.rank = 4;
    const ForwardScratch scratch =
        forward_scratch(g, q.dtype, q, k, v, none, ByteSpan{}, workspace_, stream);
    launch_pyramid(g, q.dtype, tq, tk, tv, scratch.score_q, scratch.score_k, scratch.first_q,
                   scratch.first_k, scratch.coarse[0], scratch.coarse[1], scratch.coarse[2],
                   stream);
    timer.mark(&StageTimes::pyramid);
    launch_selection(g, scratch.score_q, scratch.score_k, scratch.first_q, scratch.first_k, indices,
                     position, stream);
    timer.mark(&StageTimes::selection);
    launch_gather(g, q.dtype, tq, tk, tv, scratch.coarse[0], scratch.coarse[1], scratch.coarse[2],
                  indices, q_sel, k_sel, v_sel, stream);
    timer.mark(&StageTimes::gather);
    timer.finish();
  }

  void chunk_output_edges(const Plan& plan, DType dtype, const std::int32_t* position,
                          const void* o_sel, void* edges, const Options& options) override {
    const cudaStream_t stream = stream_of(options);
    StageTimer timer(options.times, stream);
    launch_output_edges(make_geometry(plan), dtype, position, o_sel, edges, stream);
    timer.mark(&StageTimes::scatter);
    timer.finish();
  }

  void chunk_scatter(const Plan& plan, const std::int32_t* position, const void* o_sel,
                     const void* prev_edges, const TensorView& out,
                     const Options& options) override {
    check_layout("out", out);
    const Geometry g = make_geometry(plan);
    const cudaStream_t stream = stream_of(options);
    StageTimer timer(options.times, stream);
    launch_scatter(g, out.dtype, position, o_sel, token_tensor(out), stream);
    if (prev_edges) {
      launch_scatter_edges(g, out.dtype, position, o_sel, prev_edges, token_tensor(out), stream);
    }
    timer.mark(&StageTimes::scatter);
    timer.finish();
  }

  void copy_tokens(const TensorView& x, std::int64_t tokens, void* dst,
                   const Options& options) override {
    check_layout("dout", x);
    launch_copy_tokens(x.dtype, token_tensor(x), x.shape[0], tokens, x.shape[2], x.shape[3], dst,
                       stream_of(options));
  }

  void chunk_scatter_backward(const Plan& plan, const std::int32_t* indices,
                              const std::int32_t* position, const TensorView& dout,
                              const void* next_dout, void* do_sel,
                              const Options& options) override {
    check_layout("dout", dout);
    const Geometry g = make_geometry(plan);
    const cudaStream_t stream = stream_of(options);
    StageTimer timer(options.times, stream);
    launch_scatter_backward(g, dout.dtype, indices, token_tensor(dout), do_sel, stream);
    if (next_dout) {
      launch_scatter_backward_edges(g, dout.dtype, position, token_tensor(dout), next_dout, do_sel,
                                    stream);
    }
    timer.mark(&StageTimes::scatter);
    timer.finish();
  }

  void chunk_gather_backward(const Plan& plan, const std::int32_t* position, const void* dq_sel,
                             const void* dk_sel, const void* dv_sel, const TensorView& dq,
                             const TensorView& dk, const TensorView& dv,
                             const Options& options) override {
    check_layout("dq", dq);
    check_layout("dk", dk);
    check_layout("dv", dv);
    const cudaStream_t stream = stream_of(options);
    StageTimer timer(options.times, stream);
    launch_gather_backward(make_geometry(plan), dq.dtype, position, dq_sel, dk_sel, dv_sel,
                           token_tensor(dq), token_tensor(dk), token_tensor(dv), stream);
    timer.mark(&StageTimes::gather);
    timer.finish();
  }

  void rows_attention_forward(const Plan& plan, DType dtype, const void* q, const void* k,
                              const void* v, void* o, void* stats,
                              const Options& options) override {
    const cudaStream_t stream = stream_of(options);
    StageTimer timer(options.times, stream);
    sdpa_forward(gathered_sdpa_desc(make_geometry(plan), dtype, plan.scale, true), q, k, v, o,
                 static_cast<float*>(stats), stream);
    timer.mark(&StageTimes::attention);
    timer.finish();
  }

  void rows_attention_backward(const Plan& plan, DType dtype, const void* q, const void* k,
                               const void* v, const void* o, const void* stats, const void* dout,
                               void* dq, void* dk, void* dv, const Options& options) override {
    const cudaStream_t stream = stream_of(options);
    StageTimer timer(options.times, stream);
    sdpa_backward(gathered_sdpa_desc(make_geometry(plan), dtype, plan.scale, options.deterministic),
                  q, k, v, o, dout, static_cast<const float*>(stats), dq, dk, dv, stream);
    timer.mark(&StageTimes::attention);
    timer.finish();
  }

  void copy_2d(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
               std::size_t width, std::size_t height, const Options& options) override {
    CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDeviceToDevice,
                                 stream_of(options)));
  }

  void memset_zero_on(void* ptr, std::size_t bytes, const Options& options) override {
    CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, stream_of(options)));
  }

  void* allocate_on(std::size_t bytes, void* stream) override {
    void* ptr = nullptr;
    CUDA_CHECK(cudaMallocAsync(&ptr, bytes, static_cast<cudaStream_t>(stream)));
    return ptr;
  }
  void deallocate_on(void* ptr, void* stream) noexcept override {
    cudaFreeAsync(ptr, static_cast<cudaStream_t>(stream));
  }
  void synchronize_stream(void* stream) override {
    CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
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
