// The CPU attention backend: the library's own forward/backward, timed.
#include <chrono>

#include "train/attention_backend.hpp"

namespace lighthouse::train {

namespace {

class CpuAttention final : public AttentionBackend {
 public:
  explicit CpuAttention(int threads) : threads_(threads) {}
  Device device() const override { return Device::kCPU; }

  void forward(const Config& config, const TensorView& q, const TensorView& k, const TensorView& v,
               const TensorView& out, Context& ctx) override {
    const auto start = std::chrono::steady_clock::now();
    lighthouse::forward(config, q, k, v, out, ctx, {.threads = threads_, .comm = comm_});
    add(ctx, start);
  }

  void forward_packed(const Config& config, const TensorView& q, const TensorView& k,
                      const TensorView& v, const TensorView& out, const TensorView& cu_seqlens,
                      Context& ctx) override {
    const auto start = std::chrono::steady_clock::now();
    lighthouse::forward(config, q, k, v, out, cu_seqlens, ctx, {.threads = threads_});
    add(ctx, start);
  }

  void backward(const Context& ctx, const TensorView& dout, const TensorView& dq,
                const TensorView& dk, const TensorView& dv) override {
    const auto start = std::chrono::steady_clock::now();
    lighthouse::backward(ctx, dout, dq, dk, dv, {.threads = threads_, .comm = comm_});
    add(ctx, start);
  }

 private:
  void add(const Context& ctx, std::chrono::steady_clock::time_point start) {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    (ctx.plan().config.levels == 1 ? seconds_.dense : seconds_.lighthouse) += s;
  }
  int threads_;
};

}  // namespace

void AttentionBackend::forward_packed(const Config&, const TensorView&, const TensorView&,
                                      const TensorView&, const TensorView&, const TensorView&,
                                      Context&) {
  throw Error("this attention backend does not run packed documents (cu_seqlens) yet");
}

std::unique_ptr<AttentionBackend> make_cpu_attention(int threads) {
  return std::make_unique<CpuAttention>(threads);
}

}  // namespace lighthouse::train
