// The Backend for Device::kCUDA: what the kernels support, where their buffers live, and the
// order of the stages. Nothing here waits for the GPU in forward() or backward() unless the
// caller asks for stage times or a finiteness check.
//
// Memory. A context owns one allocation (indices, inverse map, gathered q/k/v/o, softmax
// statistics) from the device's stream-ordered pool (cudaMallocAsync on the forward's stream,
// cudaFreeAsync on the same stream when the context dies; the pool keeps freed memory for
// reuse, so a training loop does not call the driver each step). That stream must outlive the
// context. The per-call scratch (scores and coarsest means in forward; the gathered gradients
// in backward) lives in caller buffers that are written only after the scratch is dead, when
// they are contiguous and share no byte with what the call reads (buffer_reuse.hpp): the
// forward's in `out`, the backward's in dq, dk and dv (plus, for one block, cuDNN's workspace
// while it is idle after the attention backward). What does not fit there lives in a
// per-stream workspace that grows on demand and is reused by every call on that stream: calls
// on one stream must not be issued from several host threads at once. So the backward's peak is
// the context (4 S-row blocks) + cuDNN's workspace (~2 blocks) + at most 1 block, not 4 more.
// A context in caller memory (ContextBuffer) has the same parts in context_layout(); the
// caller orders that memory's lifetime against the streams.
//
// Dense (levels == 1). Lighthouse is then plain causal attention over the tokens: cuDNN runs
// directly on the caller's [B, N, H, D] views (no scores, selection, gather or scatter), and the
// context keeps those views and the softmax statistics instead of copies. Not so with a
// ContextBuffer, which must hold everything backward needs: the general path then runs.
#include "cuda/backend.hpp"

#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "core/carver.hpp"
#include "cuda/buffer_reuse.hpp"
#include "cuda/check.hpp"
#include "cuda/cudnn_attention.hpp"
#include "cuda/forward_stages.hpp"
#include "cuda/stage_timer.hpp"
#include "cuda/stages.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cuda {

Geometry make_geometry(const Plan& plan) {
  const int levels = plan.config.levels;
  if (levels < 1 || levels > kMaxLevels) {
    throw InvalidArgument("levels", std::to_string(levels),
                          "must be between 1 and " + std::to_string(kMaxLevels) + " on CUDA");
  }
  Geometry g;
  g.batch = plan.batch;
  g.seq = plan.seq;
  g.heads = plan.heads;
  g.head_dim = plan.head_dim;
  g.levels = levels;
  g.pool = plan.config.pool;
  while ((1 << g.log2_pool) < g.pool) ++g.log2_pool;
  g.pyramid_size = plan.pyramid_size;
  g.causal = plan.config.selection == Selection::kCausal;
  for (int l = 0; l < levels; ++l) {
    g.offset[l] = plan.offset[l];
    g.size[l] = plan.size[l];
  }
  if (levels == 1) {  // dense: one "tile" holding every token, nothing kept
    g.tiles = 1;
    g.tile_entries = plan.seq;
  } else {
    g.tiles = plan.tiles;
    g.tile_entries = plan.tile_entries;
  }
  g.S = plan.S;
  const std::int64_t per_tile =
      g.tile_entries + static_cast<std::int64_t>(levels - 1) * g.pool * kTileSize;
  if (g.tiles < 1 || g.S != g.tiles * per_tile || g.tiles * g.tile_entries != g.size[levels - 1]) {
    throw Error("CUDA backend: inconsistent plan (S = " + std::to_string(g.S) + ", tiles = " +
                std::to_string(g.tiles) + ", C = " + std::to_string(g.tile_entries) + ")");
  }
  return g;
}

namespace {

TokenTensor token(const TensorView& t) {
  return {t.data, t.strides[0], t.strides[1], t.strides[2]};
}

// The stage kernels access rows as 16-byte vectors.
void check_layout(const char* name, const TensorView& t) {
  const std::int64_t vec = 16 / static_cast<std::int64_t>(dtype_size(t.dtype));
  if (reinterpret_cast<std::uintptr_t>(t.data) % 16 != 0) {
    char address[32];
    std::snprintf(address, sizeof address, "%p", t.data);
    throw InvalidArgument(std::string(name) + ".data", address,
                          "must be 16-byte aligned on CUDA (rows are read as 16-byte vectors)");
  }
  if (t.strides[3] != 1) {
    throw InvalidArgument(std::string(name) + ".stride[3]", std::to_string(t.strides[3]),
                          "the head dimension must be contiguous");
  }
  for (int d = 0; d < 3; ++d) {
    if (t.shape[d] > 1 && t.strides[d] % vec != 0) {
      throw InvalidArgument(
          std::string(name) + ".stride[" + std::to_string(d) + "]", std::to_string(t.strides[d]),
          "must be a multiple of " + std::to_string(vec) + " elements (16 bytes) on CUDA");
    }
  }
}

void check_finite(const char* name, const TensorView& t, cudaStream_t stream) {
  unsigned* count = nullptr;
  CUDA_CHECK(cudaMallocAsync(&count, sizeof(unsigned), stream));
  unsigned host = 0;
  try {
    CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(unsigned), stream));
    launch_count_nonfinite(t.dtype, token(t), t.shape[0], t.shape[1], t.shape[2], t.shape[3], count,
                           stream);
    CUDA_CHECK(cudaMemcpyAsync(&host, count, sizeof(unsigned), cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
  } catch (...) {
    cudaFreeAsync(count, stream);
    throw;
  }
  CUDA_CHECK(cudaFreeAsync(count, stream));
  if (host > 0) {
    throw InvalidArgument(name, std::to_string(host) + " NaN/Inf values",
                          "must be finite (check_finite is on)");
  }
}

// `waiter` does not run past this point before `producer`'s work queued so far is done.
void stream_wait(cudaStream_t waiter, cudaStream_t producer) {
  cudaEvent_t event = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  const cudaError_t recorded = cudaEventRecord(event, producer);
  const cudaError_t waited =
      recorded == cudaSuccess ? cudaStreamWaitEvent(waiter, event, 0) : recorded;
  cudaEventDestroy(event);  // released once the recorded work completes
  CUDA_CHECK(waited);
}

// A loan of cuDNN's cached workspace (sdpa_borrow_workspace) for the rest of a scope: null when
// it is too small; returned when the scope ends, after the work that uses it has been queued.
class WorkspaceLoan {
 public:
  WorkspaceLoan(std::size_t bytes, cudaStream_t stream)
      : stream_(stream), data_(sdpa_borrow_workspace(bytes, stream)) {}
  WorkspaceLoan(const WorkspaceLoan&) = delete;
  WorkspaceLoan& operator=(const WorkspaceLoan&) = delete;
  ~WorkspaceLoan() {
    if (!data_) return;
    try {
      sdpa_return_workspace(stream_);
    } catch (...) {  // nothing to report from a destructor; the next CUDA call reports the error
    }
  }
  void* get() const { return data_; }

 private:
  cudaStream_t stream_;
  void* data_;
};

// What backward needs of a forward: one stream-ordered allocation, or the caller's buffer.
class CudaState final : public ContextState {
 public:
  // In context_layout(plan, dtype): its own stream-ordered allocation, or `external`, caller
  // memory of context_bytes(plan, dtype) bytes (a ContextBuffer) that it neither owns nor frees.
  CudaState(const Plan& plan, DType dtype, cudaStream_t stream, void* external = nullptr)
      : dtype_(dtype), stream_(stream) {
    const ContextLayout at = context_layout(plan, dtype);
    index_count_ = static_cast<std::size_t>(plan.batch * plan.heads * plan.S);
    if (!external) CUDA_CHECK(cudaMallocAsync(&base_, at.bytes, stream));
    char* base = static_cast<char*>(external ? external : base_);
    indices = reinterpret_cast<std::int32_t*>(base + at.indices);
    inverse = reinterpret_cast<std::int32_t*>(base + at.position);
    stats = reinterpret_cast<float*>(base + at.stats);
    sel = {base + at.q, base + at.k, base + at.v, base + at.o};
    span_ = span_of(base, at.bytes);
  }
  CudaState(const CudaState&) = delete;
  CudaState& operator=(const CudaState&) = delete;
  ~CudaState() override {
    if (base_) cudaFreeAsync(base_, stream_);  // nothing to report from a destructor
  }

  void copy_indices(std::int32_t* host_dst) const override {
    CUDA_CHECK(cudaMemcpyAsync(host_dst, indices, index_count_ * sizeof(std::int32_t),
                               cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  DType dtype() const { return dtype_; }
  cudaStream_t stream() const { return stream_; }
  // The bytes of the context (no caller buffer used as scratch may touch them).
  const ByteSpan& span() const { return span_; }

  std::int32_t* indices = nullptr;  // [BH, S]
  std::int32_t* inverse = nullptr;  // [BH, P]
  float* stats = nullptr;           // [BH, S]
  std::array<void*, 4> sel{};       // gathered q, k, v and the attention output, [BH, S, D]

 private:
  DType dtype_;
  cudaStream_t stream_;
  void* base_ = nullptr;  // owned allocation; null for caller memory
  std::size_t index_count_ = 0;
  ByteSpan span_;
};

// The dense context: the caller's q, k, v and out (views, not copies: they must stay alive and
// unchanged until backward) and the softmax statistics, [B, H, N] float.
class DenseState final : public ContextState {
 public:
  DenseState(const Plan& plan, DType dtype, const TensorView& q, const TensorView& k,
             const TensorView& v, const TensorView& out, cudaStream_t stream)
      : q(q), k(k), v(v), out(out), dtype_(dtype), stream_(stream), plan_(plan) {
    const std::size_t rows = static_cast<std::size_t>(plan.batch * plan.heads * plan.seq);
    CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&stats), rows * sizeof(float), stream));
  }
  DenseState(const DenseState&) = delete;
  DenseState& operator=(const DenseState&) = delete;
  ~DenseState() override {
    if (stats) cudaFreeAsync(stats, stream_);
  }

  // Every token is its own entry, in order: 0..N-1 for each (batch, head).
  void copy_indices(std::int32_t* host_dst) const override {
    for (std::int64_t bh = 0; bh < plan_.batch * plan_.heads; ++bh) {
      for (std::int64_t t = 0; t < plan_.seq; ++t) {
        *host_dst++ = static_cast<std::int32_t>(t);
      }
    }
  }

  DType dtype() const { return dtype_; }
  cudaStream_t stream() const { return stream_; }

  TensorView q, k, v, out;
  float* stats = nullptr;  // [B, H, N]

 private:
  DType dtype_;
  cudaStream_t stream_;
  Plan plan_;
};

// (b, h, s, d) element strides of a [B, N, H, D] view, as the dense attention takes them.
std::array<std::int64_t, 4> bhsd_strides(const TensorView& t) {
  return {t.strides[0], t.strides[2], t.strides[1], 1};
}

SdpaDesc dense_desc(const Plan& plan, DType dtype, const DenseState& state, bool deterministic) {
  SdpaDesc d;
  d.b = plan.batch;
  d.h = plan.heads;
  d.s = plan.seq;
  d.d = plan.head_dim;
  d.dtype = dtype;
  d.scale = plan.scale;
  d.deterministic = deterministic;
  d.q_stride = bhsd_strides(state.q);
  d.k_stride = bhsd_strides(state.k);
  d.v_stride = bhsd_strides(state.v);
  d.o_stride = bhsd_strides(state.out);
  return d;
}

// Per-(device, stream) scratch, grown on demand, reused by every call on that stream.
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() {
    for (auto& entry : buffers_) cudaFree(entry.second.ptr);  // streams may be gone by now
  }
  // Frees every cached buffer (after the device is idle).
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    CUDA_CHECK(cudaDeviceSynchronize());
    for (auto& entry : buffers_) CUDA_CHECK(cudaFree(entry.second.ptr));
    buffers_.clear();
  }
  void* get(cudaStream_t stream, std::size_t bytes) {
    int device = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    std::lock_guard<std::mutex> lock(mutex_);
    Buffer& buf = buffers_[{device, stream}];
    if (buf.bytes < bytes) {
      if (buf.ptr) CUDA_CHECK(cudaFreeAsync(buf.ptr, stream));
      buf = Buffer{};
      CUDA_CHECK(cudaMallocAsync(&buf.ptr, bytes, stream));
      buf.bytes = bytes;
    }
    return buf.ptr;
  }

 private:
  struct Buffer {
    void* ptr = nullptr;
    std::size_t bytes = 0;
  };
  std::mutex mutex_;
  std::map<std::pair<int, cudaStream_t>, Buffer> buffers_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    // Freed context buffers stay in the pool for the next step instead of going back to the
    // driver at every synchronisation.
    int device = 0;
    cudaMemPool_t pool = nullptr;
    if (cudaGetDevice(&device) == cudaSuccess &&
        cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
      std::uint64_t keep = UINT64_MAX;
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    (void)cudaGetLastError();
  }

  Device device() const override { return Device::kCUDA; }

  void check_supported(const Plan& plan, DType dtype) const override {
    const std::int64_t d = plan.head_dim;
    switch (dtype) {
      case DType::kBFloat16:
      case DType::kFloat16:
        if (d % 8 != 0 || d < 8 || d > 128) {
          throw InvalidArgument("head_dim", std::to_string(d),
                                std::string("must be a multiple of 8 between 8 and 128 for ") +
                                    dtype_name(dtype) + " on CUDA (cuDNN fused attention)");
        }
        break;
      case DType::kFloat32:
        if (d % 4 != 0 || d < 4 || d > 256) {
          throw InvalidArgument("head_dim", std::to_string(d),
                                "must be a multiple of 4 between 4 and 256 for float32 on CUDA");
        }
        break;
      default:
        throw InvalidArgument("dtype", dtype_name(dtype),
                              "the CUDA backend supports bfloat16, float16 and float32");
    }
    if (plan.config.levels > kMaxLevels) {
      throw InvalidArgument("levels", std::to_string(plan.config.levels),
                            "must be at most " + std::to_string(kMaxLevels) + " on CUDA");
    }
    if (plan.config.levels > 1 && plan.config.pool > 64) {
      throw InvalidArgument("pool", std::to_string(plan.config.pool),
                            "must be at most 64 on CUDA (a tile's pool * 128 candidates are "
                            "tracked in shared memory)");
    }
    if (plan.pyramid_size > INT32_MAX) {
      throw InvalidArgument("seq", std::to_string(plan.seq),
                            "too long for CUDA: the pyramid's " +
                                std::to_string(plan.pyramid_size) +
                                " entries per (batch, head) exceed int32 indices");
    }
  }

  std::shared_ptr<ContextState> forward(const Plan& plan, const TensorView& q, const TensorView& k,
                                        const TensorView& v, const TensorView& out,
                                        const Options& options) override {
    const DType dtype = q.dtype;
    check_forward_inputs(plan, q, k, v, out, options);
    const Geometry g = make_geometry(plan);
    const auto stream = static_cast<cudaStream_t>(options.stream);
    StageTimer timer(options.times, stream);
    if (plan.dense()) {
      auto dense = std::make_shared<DenseState>(plan, dtype, q, k, v, out, stream);
      sdpa_forward(dense_desc(plan, dtype, *dense, options.deterministic), q.data, k.data, v.data,
                   out.data, dense->stats, stream);
      timer.mark(&StageTimes::attention);
      timer.finish();
      return dense;
    }
    auto state = std::make_shared<CudaState>(plan, dtype, stream);
    selection_forward(plan, g, q, k, v, out, *state, options, timer);
    return state;
  }

  // The context in caller memory. Dense attention (levels == 1) takes the general path here, with
  // copies of q, k, v and out, so that the buffer is all backward needs.
  void forward(const Plan& plan, const TensorView& q, const TensorView& k, const TensorView& v,
               const TensorView& out, void* context, const Options& options) override {
    check_forward_inputs(plan, q, k, v, out, options);
    const Geometry g = make_geometry(plan);
    const auto stream = static_cast<cudaStream_t>(options.stream);
    StageTimer timer(options.times, stream);
    CudaState state(plan, q.dtype, stream, context);
    selection_forward(plan, g, q, k, v, out, state, options, timer);
  }

  // What both forward entry points check before launching anything.
  void check_forward_inputs(const Plan& plan, const TensorView& q, const TensorView& k,
                            const TensorView& v, const TensorView& out, const Options& options) {
    check_supported(plan, q.dtype);
    check_layout("q", q);
    check_layout("k", k);
    check_layout("v", v);
    check_layout("out", out);
    if (options.check_finite) {
      const auto stream = static_cast<cudaStream_t>(options.stream);
      check_finite("q", q, stream);
      check_finite("k", k, stream);
      check_finite("v", v, stream);
    }
  }

  // Pyramid, selection, gather, attention and scatter into `state`.
  void selection_forward(const Plan& plan, const Geometry& g, const TensorView& q,
                         const TensorView& k, const TensorView& v, const TensorView& out,
                         CudaState& state, const Options& options, StageTimer& timer) {
    const auto stream = static_cast<cudaStream_t>(options.stream);
    ForwardProblem whole;
    whole.g = g;
    whole.dtype = q.dtype;
    whole.q = token(q);
    whole.k = token(k);
    whole.v = token(v);
    whole.out = token(out);
    whole.indices = state.indices;
    whole.inverse = state.inverse;
    whole.stats = state.stats;
    whole.sel = state.sel;
    const std::size_t scratch_bytes = forward_scratch(g, q.dtype).bytes;
    // The scratch is dead after the gather and `out` is written only by the scatter after it:
    // when `out` is large enough and shares no byte with what the stages read, it holds the
    // scratch and the workspace does not grow to the coarsest level's size (0.75 N rows at
    // p = 2).
    char* scratch = out_holds_scratch(q, k, v, out, state.span(), scratch_bytes)
                        ? static_cast<char*>(out.data)
                        : static_cast<char*>(workspace_.get(stream, scratch_bytes));
    run_forward(whole, plan.scale, scratch, stream, timer);
    timer.finish();
  }

  void backward(const Plan& plan, const ContextState& base, const TensorView& dout,
                const TensorView& dq, const TensorView& dk, const TensorView& dv,
                const Options& options) override {
    check_layout("dout", dout);
    check_layout("dq", dq);
    check_layout("dk", dk);
    check_layout("dv", dv);
    if (const auto* dense = dynamic_cast<const DenseState*>(&base)) {
      dense_backward(plan, *dense, dout, dq, dk, dv, options);
      return;
    }
    const auto* state = dynamic_cast<const CudaState*>(&base);
    if (!state) throw Error("CUDA backward: the context was not produced by the CUDA backend");
    selection_backward(plan, *state, dout, dq, dk, dv, options);
  }

  void backward(const Plan& plan, const void* context, const TensorView& dout, const TensorView& dq,
                const TensorView& dk, const TensorView& dv, const Options& options) override {
    check_layout("dout", dout);
    check_layout("dq", dq);
    check_layout("dk", dk);
    check_layout("dv", dv);
    // A view on this call's stream: the caller orders its memory, nothing is freed here.
    const CudaState state(plan, dout.dtype, static_cast<cudaStream_t>(options.stream),
                          const_cast<void*>(context));
    selection_backward(plan, state, dout, dq, dk, dv, options);
  }

  // Scatter backward (dout -> do_sel), the attention backward (-> dq_sel, dk_sel, dv_sel) and the
  // pooling backward (-> dq, dk, dv). Where the four gathered [BH, S, D] blocks live is
  // choose_gradient_scratch()'s answer: in the caller's dq, dk and dv when they can hold them
  // (the attention backward then needs at most one block of workspace instead of four), else in
  // the workspace. Every layout gives the same bits: the kernels and their sums are the same,
  // only the addresses differ.
  void selection_backward(const Plan& plan, const CudaState& state, const TensorView& dout,
                          const TensorView& dq, const TensorView& dk, const TensorView& dv,
                          const Options& options) {
    const DType dtype = state.dtype();
    const Geometry g = make_geometry(plan);
    const auto stream = static_cast<cudaStream_t>(options.stream);
    if (options.check_finite) check_finite("dout", dout, stream);
    StageTimer timer(options.times, stream);
    const bool other_stream = stream != state.stream();
    if (other_stream) stream_wait(stream, state.stream());

    const std::size_t block =
        static_cast<std::size_t>(g.batch * g.heads * g.S * g.head_dim) * dtype_size(dtype);
    const SdpaDesc desc = gathered_sdpa_desc(g, dtype, plan.scale, options.deterministic);
    const GradientScratch scratch = choose_gradient_scratch(dout, dq, dk, dv, state.span(), block);
    if (scratch == GradientScratch::kWorkspace) {
      Carver carve;
      std::array<std::size_t, 4> at{};  // dout, dq, dk, dv of the gathered rows
      for (auto& a : at) a = carve.take(block);
      char* ws = static_cast<char*>(workspace_.get(stream, carve.size()));
      launch_scatter_backward(g, dtype, state.indices, token(dout), ws + at[0], stream);
      timer.mark(&StageTimes::scatter);
      sdpa_backward(desc, state.sel[0], state.sel[1], state.sel[2], state.sel[3], ws + at[0],
                    state.stats, ws + at[1], ws + at[2], ws + at[3], stream);
      timer.mark(&StageTimes::attention);
      launch_pool_backward(g, dtype, state.inverse, ws + at[1], ws + at[2], ws + at[3], token(dq),
                           token(dk), token(dv), stream);
      timer.mark(&StageTimes::gather);
    } else {
      // Stream order makes each reuse safe: a block is dead before the launch that overwrites
      // its memory is queued (comments below say which), and the caller's dout and the context
      // share no byte with dq, dk and dv (choose_gradient_scratch).
      const bool two = scratch == GradientScratch::kTwoBlocks;
      char* const q_mem = static_cast<char*>(dq.data);
      char* const k_mem = static_cast<char*>(dk.data);
      char* const v_mem = static_cast<char*>(dv.data);
      char* const ws = two ? nullptr : static_cast<char*>(workspace_.get(stream, block));
      void* const do_sel = q_mem;
      void* const dq_sel = k_mem;
      void* const dk_sel = two ? static_cast<void*>(v_mem) : ws;
      void* const dv_sel = two ? k_mem + block : static_cast<void*>(v_mem);

      launch_scatter_backward(g, dtype, state.indices, token(dout), do_sel, stream);
      timer.mark(&StageTimes::scatter);
      sdpa_backward(desc, state.sel[0], state.sel[1], state.sel[2], state.sel[3], do_sel,
                    state.stats, dq_sel, dk_sel, dv_sel, stream);
      timer.mark(&StageTimes::attention);
      // do_sel (in dq) died with the attention backward.
      launch_pool_backward(g, dtype, state.inverse, dq_sel, token(dq), stream);
      if (two) {
        // dv_sel must leave dk before dk is written: to cuDNN's workspace, idle until the next
        // attention call, when it is large enough (the fast backward's holds an fp32 dQ
        // accumulator: two blocks of 16-bit rows), else to the workspace (nothing live there).
        WorkspaceLoan loan(block, stream);
        void* staged = loan.get() ? loan.get() : workspace_.get(stream, block);
        CUDA_CHECK(cudaMemcpyAsync(staged, dv_sel, block, cudaMemcpyDeviceToDevice, stream));
        // dk holds dead blocks only: dq_sel (read above) and dv_sel (copied).
        launch_pool_backward(g, dtype, state.inverse, dk_sel, token(dk), stream);
        // dv holds dk_sel, read above.
        launch_pool_backward(g, dtype, state.inverse, staged, token(dv), stream);
      } else {
        // dk holds dq_sel, read above; dk_sel is in the workspace.
        launch_pool_backward(g, dtype, state.inverse, dk_sel, token(dk), stream);
        // dv_sel leaves dv for the workspace, free since dk_sel was read from it.
        CUDA_CHECK(cudaMemcpyAsync(ws, dv_sel, block, cudaMemcpyDeviceToDevice, stream));
        launch_pool_backward(g, dtype, state.inverse, ws, token(dv), stream);
      }
      timer.mark(&StageTimes::gather);
    }
    // The context's buffers are freed on its own stream: that must wait for these reads.
    if (other_stream) stream_wait(state.stream(), stream);
    timer.finish();
  }

  // The whole backward of dense attention: cuDNN on the saved views and the caller's gradients.
  void dense_backward(const Plan& plan, const DenseState& state, const TensorView& dout,
                      const TensorView& dq, const TensorView& dk, const TensorView& dv,
                      const Options& options) {
    const auto stream = static_cast<cudaStream_t>(options.stream);
    if (options.check_finite) check_finite("dout", dout, stream);
    StageTimer timer(options.times, stream);
    const bool other_stream = stream != state.stream();
    if (other_stream) stream_wait(stream, state.stream());
    SdpaDesc d = dense_desc(plan, state.dtype(), state, options.deterministic);
    d.do_stride = bhsd_strides(dout);
    d.dq_stride = bhsd_strides(dq);
    d.dk_stride = bhsd_strides(dk);
    d.dv_stride = bhsd_strides(dv);
    sdpa_backward(d, state.q.data, state.k.data, state.v.data, state.out.data, dout.data,
                  state.stats, dq.data, dk.data, dv.data, stream);
    timer.mark(&StageTimes::attention);
    if (other_stream) stream_wait(state.stream(), stream);  // the stats are freed there
    timer.finish();
  }

  void* allocate(std::size_t bytes) override {
    void* ptr = nullptr;
    CUDA_CHECK(cudaMalloc(&ptr, bytes));
    return ptr;
  }
  void deallocate(void* ptr) noexcept override { cudaFree(ptr); }
  void memset_zero(void* ptr, std::size_t bytes) override {
    CUDA_CHECK(cudaMemset(ptr, 0, bytes));
    CUDA_CHECK(cudaStreamSynchronize(nullptr));
  }
  void copy_to_host(void* host_dst, const void* src, std::size_t bytes) override {
    CUDA_CHECK(cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost));
  }
  void copy_from_host(void* dst, const void* host_src, std::size_t bytes) override {
    CUDA_CHECK(cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice));
    // From pageable memory the copy may still be in flight; work on other streams must see it.
    CUDA_CHECK(cudaStreamSynchronize(nullptr));
  }
  void synchronize() override { CUDA_CHECK(cudaDeviceSynchronize()); }

  // Events on the default stream around the work, from an idle device: what the GPU spends,
  // launch gaps included, without the host's timer resolution or the final synchronisation.
  double time_ms(const std::function<void()>& work) override {
    if (!timing_events_[0]) {
      for (auto& e : timing_events_) CUDA_CHECK(cudaEventCreate(&e));
    }
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaEventRecord(timing_events_[0], nullptr));
    work();
    CUDA_CHECK(cudaEventRecord(timing_events_[1], nullptr));
    CUDA_CHECK(cudaEventSynchronize(timing_events_[1]));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, timing_events_[0], timing_events_[1]));
    CUDA_CHECK(cudaDeviceSynchronize());  // work on other streams, if any, is done too
    return ms;
  }

  std::int64_t memory_in_use() override {
    std::size_t free = 0, total = 0;
    CUDA_CHECK(cudaMemGetInfo(&free, &total));
    return static_cast<std::int64_t>(total - free);
  }

  void release_cached_memory() override {
    workspace_.release();
    sdpa_release_workspace();
    int device = 0;
    cudaMemPool_t pool = nullptr;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
  }

 private:
  Workspace workspace_;
  std::array<cudaEvent_t, 2> timing_events_{};  // created on first use, kept for the process
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
