// Forward and backward entry points of Lighthouse attention.
//
//   lighthouse::Config cfg{.levels = 3, .pool = 4, .topk = 2048};
//   lighthouse::Context ctx;
//   lighthouse::forward(cfg, q, k, v, out, ctx);      // q, k, v, out: [B, N, H, D]
//   lighthouse::backward(ctx, dout, dq, dk, dv);      // all [B, N, H, D]
//
// The caller owns every tensor; the context owns what the backward pass needs (the selected
// indices and the gathered rows with their softmax statistics), so q, k, v may be freed or
// overwritten after forward() (one exception: dense attention on CUDA, see forward()). All
// tensors of one call share dtype and device.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "lighthouse/config.hpp"
#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse {

// Wall-clock (CPU) or event (CUDA) time per stage of the last call, in milliseconds.
struct StageTimes {
  double pyramid = 0, selection = 0, gather = 0, attention = 0, scatter = 0;
  double total() const { return pyramid + selection + gather + attention + scatter; }
};

struct Options {
  int threads = 0;              // CPU worker threads; 0 = all hardware threads
  bool check_finite = false;    // reject NaN/Inf inputs with InvalidArgument
  void* stream = nullptr;       // CUDA stream (cudaStream_t); null = default stream
  StageTimes* times = nullptr;  // if set, filled with per-stage timings (adds syncs on CUDA)
  // Bitwise-reproducible backward. Every Lighthouse stage is deterministic on every backend;
  // this only concerns the dense attention's backward on CUDA: cuDNN's deterministic algorithm
  // needs a workspace that grows as S^2 (about 2 * B * H * S^2 bytes), its fast algorithm adds
  // dQ contributions with atomics (bits may differ between runs in the last place). The CPU
  // backend is always deterministic.
  bool deterministic = true;
};

class ContextState;  // backend-specific, see backend.hpp

class Context {
 public:
  bool defined() const { return state_ != nullptr; }
  const Plan& plan() const { return plan_; }
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }
  // Selected pyramid indices, [B, H, S] int32 in causal order, copied to the host.
  std::vector<std::int32_t> indices() const;

 private:
  friend void forward(const Config&, const TensorView&, const TensorView&, const TensorView&,
                      const TensorView&, Context&, const Options&);
  friend void backward(const Context&, const TensorView&, const TensorView&, const TensorView&,
                       const TensorView&, const Options&);
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

}  // namespace lighthouse
