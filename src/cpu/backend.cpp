// The CPU backend: the forward and backward stage lists (pyramid, selection, gather, attention,
// scatter; backward: scatter, attention, gather), each stage a parallel pass over
// (batch, head, chunk) work items whose results do not depend on the thread count.
#include "cpu/backend.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "cpu/attention.hpp"
#include "cpu/dtype_dispatch.hpp"
#include "cpu/gather.hpp"
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

// What the backward pass needs: the selection and the gathered rows with their softmax stats,
// at the places context_layout() gives inside one buffer (the caller's or a CpuState's own).
// Hkv = plan.kv_heads: one selection, and one set of k and v rows, per KV group.
template <typename T>
struct Parts {
  std::int32_t* indices;   // [B*Hkv][S]
  std::int32_t* position;  // [B*Hkv][pyramid_size]
  T *q, *o;                // [B*H][S][D]
  T *k, *v;                // [B*Hkv][S][D]
  T* lse;                  // [B*H][S]
};

template <typename T>
Parts<T> parts_of(const Plan& plan, void* context) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
  const ContextLayout at =
      context_layout(plan, std::is_same_v<T, double> ? DType::kFloat64 : DType::kFloat32);
  auto* base = static_cast<unsigned char*>(context);
  return {reinterpret_cast<std::int32_t*>(base + at.indices),
          reinterpret_cast<std::int32_t*>(base + at.position),
          reinterpret_cast<T*>(base + at.q),
          reinterpret_cast<T*>(base + at.o),
          reinterpret_cast<T*>(base + at.k),
          reinterpret_cast<T*>(base + at.v),
          reinterpret_cast<T*>(base + at.stats)};
}

// An owned context (Context): one buffer in the shared layout.
struct CpuState final : ContextState {
  Buffer<unsigned char> storage;
  std::size_t index_count = 0;
  void copy_indices(std::int32_t* host_dst) const override {
    std::memcpy(host_dst, storage.data(), index_count * sizeof(std::int32_t));  // offset 0
  }
};

// Grouped-query attention's K/V gradient: block g of x ([groups][count]) becomes the sum of blocks
// g * G .. g * G + G - 1 ([groups * G][count]), in head order, accumulated in double and rounded
// once. In place: block g is written after blocks < (g + 1) G were read, and the blocks are
// processed in order within a chunk of elements.
template <typename T>
void sum_groups(T* x, std::int64_t groups, std::int64_t G, std::int64_t count, int threads) {
  constexpr std::int64_t kChunk = 4096;
  const std::int64_t chunks = (count + kChunk - 1) / kChunk;
  // Chunk c of every group is independent of the other chunks; groups run in order inside it, so
  // the in-place writes never overtake a read.
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t lo = c * kChunk, hi = std::min(count, lo + kChunk);
    for (std::int64_t g = 0; g < groups; ++g) {
      for (std::int64_t e = lo; e < hi; ++e) {
        double sum = 0;
        for (std::int64_t i = 0; i < G; ++i) sum += static_cast<double>(x[(g * G + i) * count + e]);
        x[g * count + e] = static_cast<T>(sum);
      }
    }
  }
}

template <typename T>
void forward_t(const Plan& plan, const TensorView& q, const TensorView& k, const TensorView& v,
               const TensorView& out, void* context, const Options& options) {
  const int threads = resolve_threads(options.threads);
  const std::int64_t BH = plan.batch * plan.heads, S = plan.S, D = plan.head_dim;
  const std::int64_t P = plan.pyramid_size, G = plan.group();
  const std::int64_t groups = plan.batch * plan.kv_heads;
  StageClock clock(options.times);
  const Parts<T> state = parts_of<T>(plan, context);

  Buffer<float> sq(static_cast<std::size_t>(groups * P)), sk(static_cast<std::size_t>(groups * P));
  level_scores(plan, q, k, v, sq.data(), sk.data(), threads);
  clock.lap(&StageTimes::pyramid);

  select_entries(plan, sq.data(), sk.data(), state.indices, state.position, threads);
  clock.lap(&StageTimes::selection);

  gather_rows(plan, q, state.indices, state.q, threads);
  gather_rows(plan, k, state.indices, state.k, threads);
  gather_rows(plan, v, state.indices, state.v, threads);
  clock.lap(&StageTimes::gather);

  // Grouped-query attention: query head bh reads its group's k and v rows.
  std::vector<AttentionHead<T>> heads(static_cast<std::size_t>(BH));
  for (std::int64_t bh = 0; bh < BH; ++bh) {
    const std::int64_t off = bh * S * D, kv = bh / G * S * D;
    heads[bh] = {state.q + off, state.k + kv, state.v + kv, state.o + off, state.lse + bh * S};
  }
  causal_attention_forward<T>(std::span<const AttentionHead<T>>(heads), S, D, D,
                              static_cast<T>(plan.scale), threads);
  clock.lap(&StageTimes::attention);

  scatter_rows(plan, state.o, state.position, out, threads);
  clock.lap(&StageTimes::scatter);
}

template <typename T>
void backward_t(const Plan& plan, const void* context, const TensorView& dout, const TensorView& dq,
                const TensorView& dk, const TensorView& dv, const Options& options) {
  const int threads = resolve_threads(options.threads);
  const std::int64_t BH = plan.batch * plan.heads, S = plan.S, D = plan.head_dim;
  const std::int64_t G = plan.group();
  StageClock clock(options.times);
  const auto rows = static_cast<std::size_t>(BH * S * D);
  // Backward only reads the context; Parts carries mutable pointers for the forward's sake.
  const Parts<T> state = parts_of<T>(plan, const_cast<void*>(context));

  Buffer<T> do_sel(rows);
  scatter_rows_backward(plan, dout, state.indices, do_sel.data(), threads);
  clock.lap(&StageTimes::scatter);

  // dk_sel and dv_sel per query head; with GQA they are then summed over each group.
  Buffer<T> dq_sel(rows), dk_sel(rows), dv_sel(rows);
  std::vector<AttentionGradHead<T>> heads(static_cast<std::size_t>(BH));
  for (std::int64_t bh = 0; bh < BH; ++bh) {
    const std::int64_t off = bh * S * D, kv = bh / G * S * D;
    heads[bh] = {state.q + off,       state.k + kv,        state.v + kv,
                 state.o + off,       state.lse + bh * S,  do_sel.data() + off,
                 dq_sel.data() + off, dk_sel.data() + off, dv_sel.data() + off};
  }
  causal_attention_backward<T>(std::span<const AttentionGradHead<T>>(heads), S, D, D,
                               static_cast<T>(plan.scale), threads);
  if (G > 1) {
    sum_groups(dk_sel.data(), plan.batch * plan.kv_heads, G, S * D, threads);
    sum_groups(dv_sel.data(), plan.batch * plan.kv_heads, G, S * D, threads);
  }
  clock.lap(&StageTimes::attention);

  gather_rows_backward(plan, dq_sel.data(), state.position, dq, threads);
  gather_rows_backward(plan, dk_sel.data(), state.position, dk, threads);
  gather_rows_backward(plan, dv_sel.data(), state.position, dv, threads);
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
    auto state = std::make_shared<CpuState>();
    state->storage = Buffer<unsigned char>(context_bytes(plan, q.dtype));
    state->index_count = static_cast<std::size_t>(plan.batch * plan.kv_heads * plan.S);
    forward(plan, q, k, v, out, state->storage.data(), options);
    return state;
  }

  void backward(const Plan& plan, const ContextState& state, const TensorView& dout,
                const TensorView& dq, const TensorView& dk, const TensorView& dv,
                const Options& options) override {
    backward(plan, static_cast<const CpuState&>(state).storage.data(), dout, dq, dk, dv, options);
  }

  void forward(const Plan& plan, const TensorView& q, const TensorView& k, const TensorView& v,
               const TensorView& out, void* context, const Options& options) override {
    dispatch_float(q.dtype, [&](auto zero) {
      forward_t<decltype(zero)>(plan, q, k, v, out, context, options);
    });
  }

  void backward(const Plan& plan, const void* context, const TensorView& dout, const TensorView& dq,
                const TensorView& dk, const TensorView& dv, const Options& options) override {
    dispatch_float(dout.dtype, [&](auto zero) {
      backward_t<decltype(zero)>(plan, context, dout, dq, dk, dv, options);
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
