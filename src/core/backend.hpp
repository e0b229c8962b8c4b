// The implementer interface: the seam between the backend-neutral core and a device's
// implementation (internal, as ggml's backend-impl.h; what users may ask of a device is the
// public lighthouse/device.hpp). Adding a backend means adding a folder under src/ that
// implements Backend and one line in src/core/backend_registry.cpp; nothing else in the core
// changes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "lighthouse/attention.hpp"
#include "lighthouse/device.hpp"

namespace lighthouse {

// Whatever a backend keeps between forward and backward (selection, gathered rows, stats).
class ContextState {
 public:
  virtual ~ContextState() = default;
  // Writes the [B, Hkv, S] int32 selected indices to host memory.
  virtual void copy_indices(std::int32_t* host_dst) const = 0;
};

// Where the parts of a context lie in a caller's buffer (ContextBuffer), in bytes from its start,
// each part 256-byte aligned. One layout for every backend: context_bytes() must not depend on
// the device (attention.hpp).
// Hkv = plan.kv_heads (the selection is made once per KV group; Hkv = H without GQA).
struct ContextLayout {
  std::size_t indices = 0;   // int32 [B*Hkv, S]: pyramid indices in causal order
  std::size_t position = 0;  // int32 [B*Hkv, pyramid_size]: row s of each pyramid entry, or -1
  std::size_t stats = 0;     // [B*H, S] log-sum-exp: float64 for float64 tensors, else float32
  std::size_t q = 0, o = 0;  // [B*H, S, D] gathered rows of the tensors' dtype
  std::size_t k = 0, v = 0;  // [B*Hkv, S, D]
  std::size_t bytes = 0;     // the whole buffer
};
ContextLayout context_layout(const Plan& plan, DType dtype);
// Bytes of one softmax statistic (the log-sum-exp) of a context of this dtype.
std::size_t context_stats_size(DType dtype);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // Throws InvalidArgument if this backend cannot run the plan with this dtype (head dim,
  // dtype support, ...).
  virtual void check_supported(const Plan& plan, DType dtype) const = 0;
  // Shapes, dtypes and devices have been validated by the core.
  virtual std::shared_ptr<ContextState> forward(const Plan& plan, const TensorView& q,
                                                const TensorView& k, const TensorView& v,
                                                const TensorView& out, const Options& options) = 0;
  virtual void backward(const Plan& plan, const ContextState& state, const TensorView& dout,
                        const TensorView& dq, const TensorView& dk, const TensorView& dv,
                        const Options& options) = 0;
  // The same two with the context in caller memory laid out as context_layout(plan, dtype)
  // (`context` is on this device, kContextAlignment-aligned and large enough). A backend that
  // does not override them rejects such calls with lighthouse::Error.
  virtual void forward(const Plan& plan, const TensorView& q, const TensorView& k,
                       const TensorView& v, const TensorView& out, void* context,
                       const Options& options);
  virtual void backward(const Plan& plan, const void* context, const TensorView& dout,
                        const TensorView& dq, const TensorView& dk, const TensorView& dv,
                        const Options& options);

  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* ptr) noexcept = 0;
  virtual void memset_zero(void* ptr, std::size_t bytes) = 0;
  // The same queued on Options::stream (CUDA: cudaMemsetAsync); elsewhere memset_zero().
  virtual void memset_zero_on(void* ptr, std::size_t bytes, const Options& /*options*/) {
    memset_zero(ptr, bytes);
  }
  // Copies between host and this device's memory (plain memcpy on the CPU).
  virtual void copy_to_host(void* host_dst, const void* src, std::size_t bytes) = 0;
  virtual void copy_from_host(void* dst, const void* host_src, std::size_t bytes) = 0;
  // Waits for all queued work (a no-op on the CPU); benchmarks call it around timed regions.
  virtual void synchronize() {}
  // Milliseconds `work` takes on this device, measured from an idle device: CUDA events around
  // the work queued on the default stream (the stream a null Options::stream means), wall-clock
  // time on the CPU. Benchmarks use it.
  virtual double time_ms(const std::function<void()>& work);

  // Device memory this process holds on the device (CUDA: total - free, so it includes caching
  // pools and workspaces), or -1 where that is not meaningful (the CPU).
  virtual std::int64_t memory_in_use() { return -1; }
  // Returns cached scratch memory (pools, workspaces) to the device, so that memory_in_use()
  // differences measure one workload's peak.
  virtual void release_cached_memory() {}

  // ---- Context parallelism (src/core/context_parallel.cpp) ------------------------------------
  // The stages one at a time, on one chunk of a sharded sequence: `plan` is ShardPlan::chunk
  // (the chunk as a sequence of its own), gathered rows are [B*H][S][D] of the tensors' dtype,
  // edges as context_parallel.hpp describes them. All work is queued on Options::stream; with
  // Options::times each call fills the fields of its stages. A backend that does not override
  // them rejects context parallelism with lighthouse::Error (context_parallel.cpp has the
  // defaults).

  // Pyramid, selection and gather: indices [B*H][S], position [B*H][P] and the gathered rows.
  virtual void chunk_select_gather(const Plan& plan, const TensorView& q, const TensorView& k,
                                   const TensorView& v, std::int32_t* indices,
                                   std::int32_t* position, void* q_sel, void* k_sel, void* v_sel,
                                   const Options& options);
  // The output rows of the chunk's last entry at levels 1..L-1 (0-based), [B*H][L-1][D], zero
  // where that entry is not selected.
  virtual void chunk_output_edges(const Plan& plan, DType dtype, const std::int32_t* position,
                                  const void* o_sel, void* edges, const Options& options);
  // The scatter of one chunk into `out` (its [B, n, H, D] view). `prev_edges` (null for the
  // sequence's first chunk): the previous chunk's output edges, which reach this chunk's first
  // c_{L-1} - 1 tokens.
  virtual void chunk_scatter(const Plan& plan, const std::int32_t* position, const void* o_sel,
                             const void* prev_edges, const TensorView& out, const Options& options);
  // The first `tokens` tokens of a [B, n, H, D] view into dst, contiguous [B][tokens][H][D].
  virtual void copy_tokens(const TensorView& x, std::int64_t tokens, void* dst,
                           const Options& options);
  // The scatter's backward of one chunk. `next_dout` (null for the sequence's last chunk): the
  // next chunk's first c_{L-1} - 1 dout tokens ([B][c_{L-1} - 1][H][D]), which the chunk's last
  // entries reach.
  virtual void chunk_scatter_backward(const Plan& plan, const std::int32_t* indices,
                                      const std::int32_t* position, const TensorView& dout,
                                      const void* next_dout, void* do_sel, const Options& options);
  virtual void chunk_gather_backward(const Plan& plan, const std::int32_t* position,
                                     const void* dq_sel, const void* dk_sel, const void* dv_sel,
                                     const TensorView& dq, const TensorView& dk,
                                     const TensorView& dv, const Options& options);
  // The dense causal attention over [B*H][S][D] rows of `plan` (a levels == 1 plan over the
  // gathered sequence; its scale is the softmax scale), and its backward. stats:
  // [B*H][S] of context_stats_size(dtype).
  virtual void rows_attention_forward(const Plan& plan, DType dtype, const void* q, const void* k,
                                      const void* v, void* o, void* stats, const Options& options);
  virtual void rows_attention_backward(const Plan& plan, DType dtype, const void* q, const void* k,
                                       const void* v, const void* o, const void* stats,
                                       const void* dout, void* dq, void* dk, void* dv,
                                       const Options& options);
  // `height` rows of `width` bytes from src (row pitch spitch) to dst (row pitch dpitch).
  virtual void copy_2d(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
                       std::size_t width, std::size_t height, const Options& options);
  // Memory ordered on a stream (CUDA: cudaMallocAsync / cudaFreeAsync on it); freed on the
  // stream it was taken on. Elsewhere allocate() and deallocate().
  virtual void* allocate_on(std::size_t bytes, void* /*stream*/) { return allocate(bytes); }
  virtual void deallocate_on(void* ptr, void* /*stream*/) noexcept { deallocate(ptr); }
  // Waits for the work queued on `stream` (the collectives' timing).
  virtual void synchronize_stream(void* /*stream*/) { synchronize(); }
};

// The backend for a device; throws lighthouse::Error if it was not compiled in or no device
// is present (backend_available(), device.hpp, says which).
Backend& backend_for(Device device);

}  // namespace lighthouse
