// The implementer interface: the seam between the backend-neutral core and a device's
// implementation (internal, as ggml's backend-impl.h; what users may ask of a device is the
// public lighthouse/device.hpp). Adding a backend means adding a folder under src/ that
// implements Backend and one line in src/core/backend_registry.cpp; nothing else in the core
// changes.
#pragma once

#include <cstddef>
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
};

// The backend for a device; throws lighthouse::Error if it was not compiled in or no device
// is present (backend_available(), device.hpp, says which).
Backend& backend_for(Device device);

}  // namespace lighthouse
