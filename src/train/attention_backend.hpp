// The seam between the model's attention layers and the device that runs attention. Layers hand
// q, k, v, out (and their gradients) as [B, N, H, D] views, the layout the library wants, and a
// lighthouse::Config (levels == 1 is dense causal attention). The CPU backend calls
// lighthouse::forward/backward on Device::kCPU; a CUDA backend implements the same two calls on
// device memory, so the model does not change when it slots in.
#pragma once

#include <memory>

#include "lighthouse/lighthouse.hpp"

namespace lighthouse::train {

class AttentionBackend {
 public:
  virtual ~AttentionBackend() = default;
  virtual Device device() const = 0;
  virtual void forward(const Config& config, const TensorView& q, const TensorView& k,
                       const TensorView& v, const TensorView& out, Context& ctx) = 0;
  // Packed documents: `cu_seqlens` (int32 host offsets, docs/SPEC.md) keeps attention within
  // each document; backward() as usual. A backend without it throws lighthouse::Error.
  virtual void forward_packed(const Config& config, const TensorView& q, const TensorView& k,
                              const TensorView& v, const TensorView& out,
                              const TensorView& cu_seqlens, Context& ctx);
  // dq, dk, dv are overwritten.
  virtual void backward(const Context& ctx, const TensorView& dout, const TensorView& dq,
                        const TensorView& dk, const TensorView& dv) = 0;

  // Context parallelism: the calls that follow pass `comm` as Options::comm (q, k, v, out and
  // the gradients are then this rank's chunks of the sequence); null: whole sequences. The
  // model sets it before each forward and keeps it for that forward's backward.
  void set_communicator(Communicator* comm) { comm_ = comm; }

  // Wall-clock seconds spent inside forward/backward since the last reset, split by whether the
  // call was dense (levels == 1) or Lighthouse: the trainer reports the attention fraction.
  struct Seconds {
    double dense = 0, lighthouse = 0;
  };
  Seconds seconds() const { return seconds_; }
  void reset_seconds() { seconds_ = {}; }

 protected:
  Seconds seconds_;
  Communicator* comm_ = nullptr;
};

// lighthouse::forward/backward on the CPU (float32 or float64), `threads` workers (0 = all).
std::unique_ptr<AttentionBackend> make_cpu_attention(int threads = 0);

}  // namespace lighthouse::train
