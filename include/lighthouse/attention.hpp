// Forward and backward entry points of Lighthouse attention.
//
//   lighthouse::Config cfg{.levels = 3, .pool = 4, .topk = 2048};
//   lighthouse::Context ctx;
//   lighthouse::forward(cfg, q, k, v, out, ctx);      // q, k, v, out: [B, N, H, D]
//   lighthouse::backward(ctx, dout, dq, dk, dv);      // all [B, N, H, D]
//
// Or with the context in memory the caller allocates (a framework's saved tensor):
//   const std::size_t bytes = lighthouse::context_bytes(plan, dtype);  // device memory of q's
//   lighthouse::forward(cfg, q, k, v, out, lighthouse::ContextBuffer{ptr, bytes});
//   lighthouse::backward(cfg, lighthouse::ContextBuffer{ptr, bytes}, dout, dq, dk, dv);
//
// The caller owns every tensor; the context owns what the backward pass needs (the selected
// indices and the gathered rows with their softmax statistics), so q, k, v may be freed or
// overwritten after forward() (one exception: dense attention on CUDA, see forward()). All
// tensors of one call share dtype and device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "lighthouse/config.hpp"
#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse {

// Wall-clock (CPU) or event (CUDA) time per stage of the last call, in milliseconds.
// With context parallelism, `communication` is the time spent in the collectives (the stages
// exclude it).
struct StageTimes {
  double pyramid = 0, selection = 0, gather = 0, attention = 0, scatter = 0;
  double communication = 0;
  double total() const {
    return pyramid + selection + gather + attention + scatter + communication;
  }
};

class Communicator;  // communicator.hpp

struct Options {
  int threads = 0;  // CPU worker threads; 0 = all hardware threads
  // Reject NaN/Inf in q, k, v (forward) or dout (backward) with InvalidArgument naming the
  // tensor: a scan of the input on its own device (on CUDA, a kernel and one host sync).
  bool check_finite = false;
  void* stream = nullptr;       // CUDA stream (cudaStream_t); null = default stream
  StageTimes* times = nullptr;  // if set, filled with per-stage timings (adds syncs on CUDA)
  // Bitwise-reproducible backward. Every Lighthouse stage is deterministic on every backend;
  // this only concerns the dense attention's backward on CUDA: cuDNN's deterministic algorithm
  // needs a workspace that grows as S^2 (about 2 * B * H * S^2 bytes), its fast algorithm adds
  // dQ contributions with atomics (bits may differ between runs in the last place). The CPU
  // backend is always deterministic.
  bool deterministic = true;
  // Context parallelism (context_parallel.hpp): q, k, v, out and the gradients are this rank's
  // shard of the sequence, [B, N / W, H, D] with W = comm->size(), and every rank of the group
  // makes the same call. backward() needs the forward's communicator again. Contexts only (not
  // ContextBuffer). Null: the whole sequence is here.
  Communicator* comm = nullptr;
};

class ContextState;  // backend-specific (the implementer interface, src/core/backend.hpp)

class Context {
 public:
  bool defined() const { return state_ != nullptr; }
  const Plan& plan() const { return plan_; }
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }
  // Selected pyramid indices, [B, H, S] int32 in causal order, copied to the host. After a
  // forward over packed documents: each group's [documents, Hkv, S] one after another (a group is
  // the documents that share a plan, in the order of their first document).
  std::vector<std::int32_t> indices() const;

 private:
  friend void forward(const Config&, const TensorView&, const TensorView&, const TensorView&,
                      const TensorView&, Context&, const Options&);
  friend void backward(const Context&, const TensorView&, const TensorView&, const TensorView&,
                       const TensorView&, const Options&);
  friend void forward(const Config&, const TensorView&, const TensorView&, const TensorView&,
                      const TensorView&, const TensorView&, Context&, const Options&);
  Plan plan_;
  Device device_ = Device::kCPU;
  DType dtype_ = DType::kFloat32;
  std::shared_ptr<ContextState> state_;
};

// out = Lighthouse(q, k, v). Validates shapes, dtypes, devices and the config; throws
// InvalidArgument on a violation. `ctx` is overwritten.
// On CUDA with levels == 1 the context refers to q, k, v and out instead of copying them: keep
// them alive and unchanged until backward().
void forward(const Config& config, const TensorView& q, const TensorView& k, const TensorView& v,
             const TensorView& out, Context& ctx, const Options& options = {});

// dq, dk, dv = gradients of <out, dout> with respect to q, k, v (overwritten, not added to).
void backward(const Context& ctx, const TensorView& dout, const TensorView& dq,
              const TensorView& dk, const TensorView& dv, const Options& options = {});

// ---- Context in caller memory -------------------------------------------------------------------
// For frameworks whose autograd keeps tensors between forward and backward (PyTorch: under
// torch.compile every saved buffer must have a size known from shapes alone). The context then
// lives in a byte buffer that the caller allocates on the tensors' device and keeps, unchanged,
// until backward. Results are bitwise identical to those of an owned Context.

// Required alignment of a context buffer's address (every allocator of PyTorch gives it).
inline constexpr std::size_t kContextAlignment = 64;

// Bytes a context buffer needs for this plan and dtype. A pure function of its arguments and
// the same on every device, so that a shape-only ("meta") pass can size the buffer without
// knowing where the tensors will live.
std::size_t context_bytes(const Plan& plan, DType dtype);

// Where a context buffer written by forward() holds the selected indices (what
// Context::indices() returns: [B, H, S] int32 pyramid indices in causal order), in bytes from its
// start. Like context_bytes(), a pure function of its arguments.
std::size_t context_indices_offset(const Plan& plan, DType dtype);

struct ContextBuffer {
  void* data = nullptr;   // on the tensors' device, kContextAlignment-aligned
  std::size_t bytes = 0;  // at least context_bytes(plan, dtype); extra bytes are left alone
};

// As forward() above, writing the context into `ctx` instead of a Context. Throws
// InvalidArgument when the buffer is null, misaligned or too small.
void forward(const Config& config, const TensorView& q, const TensorView& k, const TensorView& v,
             const TensorView& out, const ContextBuffer& ctx, const Options& options = {});

// As backward() above, reading a context written by forward(config, ...) into `ctx`. `config`
// must be the forward's; the plan follows from it and dout's shape, the dtype from dout's.
void backward(const Config& config, const ContextBuffer& ctx, const TensorView& dout,
              const TensorView& dq, const TensorView& dk, const TensorView& dv,
              const Options& options = {});

// ---- Packed documents (docs/SPEC.md, "Packed documents") ----------------------------------------
// q, k, v, out [B, N, H, D] hold documents one after another: `cu_seqlens` is a rank-1 int32
// tensor of docs + 1 offsets into the B * N tokens flattened in (b, n) order (FlashAttention's
// varlen convention), on the tensors' device (host memory for CPU tensors, device memory for
// CUDA ones; read once with a device-to-host copy). Rules, each an InvalidArgument naming
// cu_seqlens: cu_seqlens[0] = 0, strictly increasing (no empty document), the last offset
// B * N, and every row start b * N an offset (no document straddles two rows). Document i,
// tokens [cu[i], cu[i+1]), is attended as its own sequence under the any-length rule: outputs
// and gradients equal those of separate calls per document (bit for bit on the CPU). Not with
// context parallelism (Options::comm). backward(ctx, ...) above takes the context as usual.
void forward(const Config& config, const TensorView& q, const TensorView& k, const TensorView& v,
             const TensorView& out, const TensorView& cu_seqlens, Context& ctx,
             const Options& options = {});

// An upper bound of the context buffer that packed documents need, from shapes alone (for a
// framework's shape-only pass): `tokens` = B * N, `documents` = cu_seqlens' length - 1, whatever
// the offsets. (The exact need depends on the documents' lengths.)
std::size_t context_bytes_varlen(const Config& config, std::int64_t tokens, std::int64_t documents,
                                 std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim,
                                 DType dtype);

// Packed documents with the context in caller memory: `ctx.bytes` at least
// context_bytes_varlen(...), which always suffices; backward needs the same config and
// cu_seqlens.
void forward(const Config& config, const TensorView& q, const TensorView& k, const TensorView& v,
             const TensorView& out, const TensorView& cu_seqlens, const ContextBuffer& ctx,
             const Options& options = {});
void backward(const Config& config, const TensorView& cu_seqlens, const ContextBuffer& ctx,
              const TensorView& dout, const TensorView& dq, const TensorView& dk,
              const TensorView& dv, const Options& options = {});

}  // namespace lighthouse
