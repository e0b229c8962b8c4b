// The CPU backend: the four stages of the spec in order, each one a parallel pass over
// (batch, head, chunk) work items whose results do not depend on the thread count.
#include "cpu/backend.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "cpu/dense_attention.hpp"
#include "cpu/dtype_dispatch.hpp"
#include "cpu/parallel.hpp"
#include "cpu/pyramid.hpp"
#include "cpu/scatter.hpp"
#include "cpu/selection.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cpu {

namespace {

// Accumulates wall-clock milliseconds into one StageTimes field when timing is requested.
class StageClock {
 public:
  explicit StageClock(StageTimes* times) : times_(times) {
    if (times_) *times_ = StageTimes{};
  }
  void lap(double StageTimes::*field) {
    if (!times_) return;
    const auto now = std::chrono::steady_clock::now();
    times_->*field += std::chrono::duration<double, std::milli>(now - last_).count();
    last_ = now;
  }

 private:
  StageTimes* times_;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// What the backward pass needs: the selection and the gathered rows with their softmax stats.
template <typename T>
struct CpuState final : ContextState {
  Buffer<std::int32_t> indices;   // [B*H][S]
  Buffer<std::int32_t> position;  // [B*H][pyramid_size]
  Buffer<T> q, k, v, o;           // [B*H][S][D]
  Buffer<T> lse;                  // [B*H][S]
  void copy_indices(std::int32_t* host_dst) const override {
    std::memcpy(host_dst, indices.data(), indices.size() * sizeof(std::int32_t));
  }
};

template <typename T>
std::shared_ptr<ContextState> forward_t(const Plan& plan, const TensorView& q, const TensorView& k,
                                        const TensorView& v, const TensorView& out,
                                        const Options& options) {
  const int threads = resolve_threads(options.threads);
  const std::int64_t BH = plan.batch * plan.heads, S = plan.S, D = plan.head_dim;
  const std::int64_t P = plan.pyramid_size;
  StageClock clock(options.times);
  auto state = std::make_shared<CpuState<T>>();

  Buffer<float> sq(static_cast<std::size_t>(BH * P)), sk(static_cast<std::size_t>(BH * P));
  level_scores(plan, q, k, sq.data(), sk.data(), threads);
  clock.lap(&StageTimes::pyramid);

  state->indices = Buffer<std::int32_t>(static_cast<std::size_t>(BH * S));
  state->position = Buffer<std::int32_t>(static_cast<std::size_t>(BH * P));
  select_entries(plan, sq.data(), sk.data(), state->indices.data(), state->position.data(),
                 threads);
  clock.lap(&StageTimes::selection);

  const auto rows = static_cast<std::size_t>(BH * S * D);
  state->q = Buffer<T>(rows);
  state->k = Buffer<T>(rows);
  state->v = Buffer<T>(rows);
  gather_rows(plan, q, state->indices.data(), state->q.data(), threads);
  gather_rows(plan, k, state->indices.data(), state->k.data(), threads);
  gather_rows(plan, v, state->indices.data(), state->v.data(), threads);
  clock.lap(&StageTimes::gather);

  state->o = Buffer<T>(rows);
  state->lse = Buffer<T>(static_cast<std::size_t>(BH * S));
  std::vector<AttentionHead<T>> heads(static_cast<std::size_t>(BH));
  for (std::int64_t bh = 0; bh < BH; ++bh) {
    const std::int64_t off = bh * S * D;
    heads[bh] = {state->q.data() + off, state->k.data() + off, state->v.data() + off,
                 state->o.data() + off, state->lse.data() + bh * S};
  }
  causal_attention_forward<T>(std::span<const AttentionHead<T>>(heads), S, D, D,
                              static_cast<T>(plan.scale), threads);
  clock.lap(&StageTimes::attention);

  scatter_rows(plan, state->o.data(), state->position.data(), out, threads);
  clock.lap(&StageTimes::scatter);
  return state;
}

template <typename T>
void backward_t(const Plan& plan, const CpuState<T>& state, const TensorView& dout,
                const TensorView& dq, const TensorView& dk, const TensorView& dv,
                const Options& options) {
  const int threads = resolve_threads(options.threads);
  const std::int64_t BH = plan.batch * plan.heads, S = plan.S, D = plan.head_dim;
  StageClock clock(options.times);
  const auto rows = static_cast<std::size_t>(BH * S * D);

  Buffer<T> do_sel(rows);
  scatter_rows_backward(plan, dout, state.indices.data(), do_sel.data(), threads);
  clock.lap(&StageTimes::scatter);

  Buffer<T> dq_sel(rows), dk_sel(rows), dv_sel(rows);
  std::vector<AttentionGradHead<T>> heads(static_cast<std::size_t>(BH));
  for (std::int64_t bh = 0; bh < BH; ++bh) {
    const std::int64_t off = bh * S * D;
    heads[bh] = {state.q.data() + off, state.k.data() + off,      state.v.data() + off,
                 state.o.data() + off, state.lse.data() + bh * S, do_sel.data() + off,
                 dq_sel.data() + off,  dk_sel.data() + off,       dv_sel.data() + off};
  }
  causal_attention_backward<T>(std::span<const AttentionGradHead<T>>(heads), S, D, D,
                               static_cast<T>(plan.scale), threads);
  clock.lap(&StageTimes::attention);

  spread_rows(plan, dq_sel.data(), state.position.data(), dq, threads);
  spread_rows(plan, dk_sel.data(), state.position.data(), dk, threads);
  spread_rows(plan, dv_sel.data(), state.position.data(), dv, threads);
  clock.lap(&StageTimes::gather);
}

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::kCPU; }

  void check_supported(const Plan&, DType dtype) const override {
    dispatch_float(dtype, [](auto) {});  // throws for anything but float32/float64
  }

  std::shared_ptr<ContextState> forward(const Plan& plan, const TensorView& q, const TensorView& k,
                                        const TensorView& v, const TensorView& out,
                                        const Options& options) override {
    return dispatch_float(
        q.dtype, [&](auto zero) { return forward_t<decltype(zero)>(plan, q, k, v, out, options); });
  }

  void backward(const Plan& plan, const ContextState& state, const TensorView& dout,
                const TensorView& dq, const TensorView& dk, const TensorView& dv,
                const Options& options) override {
    dispatch_float(dout.dtype, [&](auto zero) {
      using T = decltype(zero);
      backward_t<T>(plan, static_cast<const CpuState<T>&>(state), dout, dq, dk, dv, options);
    });
  }

  void* allocate(std::size_t bytes) override {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) throw Error("out of host memory allocating " + std::to_string(bytes) + " bytes");
    return p;
  }
  void deallocate(void* ptr) noexcept override { std::free(ptr); }
  void memset_zero(void* ptr, std::size_t bytes) override { std::memset(ptr, 0, bytes); }
  void copy_to_host(void* dst, const void* src, std::size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void copy_from_host(void* dst, const void* src, std::size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
};

}  // namespace

std::unique_ptr<Backend> make_backend() {
  return std::make_unique<CpuBackend>();
}

}  // namespace lighthouse::cpu
