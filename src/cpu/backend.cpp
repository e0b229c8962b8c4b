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

// Pyramid, selection and gather of q, k, v into indices, position and the gathered rows (one
// selection per KV group: [B * Hkv] score rows).
void select_and_gather(const Plan& plan, const TensorView& q, const TensorView& k,
                       const TensorView& v, std::int32_t* indices, std::int32_t* position,
                       void* q_sel, void* k_sel, void* v_sel, int threads, StageClock& clock) {
  const std::int64_t groups = plan.batch * plan.kv_heads, P = plan.pyramid_size;
  Buffer<float> sq(static_cast<std::size_t>(groups * P)), sk(static_cast<std::size_t>(groups * P));
  level_scores(plan, q, k, v, sq.data(), sk.data(), threads);
  clock.lap(&StageTimes::pyramid);

  select_entries(plan, sq.data(), sk.data(), indices, position, threads);
  clock.lap(&StageTimes::selection);

  gather_rows(plan, q, indices, q_sel, threads);
  gather_rows(plan, k, indices, k_sel, threads);
  gather_rows(plan, v, indices, v_sel, threads);
  clock.lap(&StageTimes::gather);
}

// The dense causal attention over [B*H][S][D] query rows; grouped-query attention: query head bh
// reads its group's k and v rows ([B*Hkv][S][D]).
template <typename T>
void rows_attention(const Plan& plan, const T* q, const T* k, const T* v, T* o, T* lse,
                    int threads) {
  const std::int64_t BH = plan.batch * plan.heads, S = plan.S, D = plan.head_dim;
  const std::int64_t G = plan.group();
  std::vector<AttentionHead<T>> heads(static_cast<std::size_t>(BH));
  for (std::int64_t bh = 0; bh < BH; ++bh) {
    const std::int64_t off = bh * S * D, kv = bh / G * S * D;
    heads[bh] = {q + off, k + kv, v + kv, o + off, lse + bh * S};
  }
  causal_attention_forward<T>(std::span<const AttentionHead<T>>(heads), S, D, D,
                              static_cast<T>(plan.scale), threads);
}

template <typename T>
// dk and dv must hold [B*H][S][D] rows (per query head); the first [B*Hkv][S][D] hold the result.
void rows_attention_backward(const Plan& plan, const T* q, const T* k, const T* v, const T* o,
                             const T* lse, const T* dout, T* dq, T* dk, T* dv, int threads) {
  const std::int64_t BH = plan.batch * plan.heads, S = plan.S, D = plan.head_dim;
  const std::int64_t G = plan.group();
  std::vector<AttentionGradHead<T>> heads(static_cast<std::size_t>(BH));
  for (std::int64_t bh = 0; bh < BH; ++bh) {
    const std::int64_t off = bh * S * D, kv = bh / G * S * D;
    heads[bh] = {q + off,    k + kv,   v + kv,   o + off, lse + bh * S,
                 dout + off, dq + off, dk + off, dv + off};
  }
  causal_attention_backward<T>(std::span<const AttentionGradHead<T>>(heads), S, D, D,
                               static_cast<T>(plan.scale), threads);
  // dk and dv were written per query head ([B*H][S][D]); with GQA, summed over each group.
  if (G > 1) {
    sum_groups(dk, plan.batch * plan.kv_heads, G, S * D, threads);
    sum_groups(dv, plan.batch * plan.kv_heads, G, S * D, threads);
  }
}

template <typename T>
void forward_t(const Plan& plan, const TensorView& q, const TensorView& k, const TensorView& v,
               const TensorView& out, void* context, const Options& options) {
  const int threads = resolve_threads(options.threads);
  StageClock clock(options.times);
  const Parts<T> state = parts_of<T>(plan, context);

  select_and_gather(plan, q, k, v, state.indices, state.position, state.q, state.k, state.v,
                    threads, clock);

  rows_attention<T>(plan, state.q, state.k, state.v, state.o, state.lse, threads);
  clock.lap(&StageTimes::attention);

  scatter_rows(plan, state.o, state.position, out, threads);
  clock.lap(&StageTimes::scatter);
}

template <typename T>
void backward_t(const Plan& plan, const void* context, const TensorView& dout, const TensorView& dq,
                const TensorView& dk, const TensorView& dv, const Options& options) {
  const int threads = resolve_threads(options.threads);
  const std::int64_t BH = plan.batch * plan.heads, S = plan.S, D = plan.head_dim;
  StageClock clock(options.times);
  const auto rows = static_cast<std::size_t>(BH * S * D);
  // Backward only reads the context; Parts carries mutable pointers for the forward's sake.
  const Parts<T> state = parts_of<T>(plan, const_cast<void*>(context));

  Buffer<T> do_sel(rows);
  scatter_rows_backward(plan, dout, state.indices, do_sel.data(), threads);
  clock.lap(&StageTimes::scatter);

  // dk_sel and dv_sel per query head; with GQA they are then summed over each group.
  Buffer<T> dq_sel(rows), dk_sel(rows), dv_sel(rows);
  rows_attention_backward<T>(plan, state.q, state.k, state.v, state.o, state.lse, do_sel.data(),
                             dq_sel.data(), dk_sel.data(), dv_sel.data(), threads);
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

  // ---- context parallelism: the stages of one chunk (backend.hpp) ----------------------------
  void chunk_select_gather(const Plan& plan, const TensorView& q, const TensorView& k,
                           const TensorView& v, std::int32_t* indices, std::int32_t* position,
                           void* q_sel, void* k_sel, void* v_sel, const Options& options) override {
    StageClock clock(options.times);
    select_and_gather(plan, q, k, v, indices, position, q_sel, k_sel, v_sel,
                      resolve_threads(options.threads), clock);
  }

  void chunk_output_edges(const Plan& plan, DType dtype, const std::int32_t* position,
                          const void* o_sel, void* edges, const Options& options) override {
    StageClock clock(options.times);
    output_edge_rows(plan, dtype, position, o_sel, edges);
    clock.lap(&StageTimes::scatter);
  }

  void chunk_scatter(const Plan& plan, const std::int32_t* position, const void* o_sel,
                     const void* prev_edges, const TensorView& out,
                     const Options& options) override {
    StageClock clock(options.times);
    scatter_rows(plan, o_sel, position, out, resolve_threads(options.threads));
    if (prev_edges) scatter_edge_tokens(plan, o_sel, position, prev_edges, out);
    clock.lap(&StageTimes::scatter);
  }

  void copy_tokens(const TensorView& x, std::int64_t tokens, void* dst, const Options&) override {
    const std::size_t row = static_cast<std::size_t>(x.shape[3]) * dtype_size(x.dtype);
    auto* out = static_cast<unsigned char*>(dst);
    for (std::int64_t b = 0; b < x.shape[0]; ++b)
      for (std::int64_t t = 0; t < tokens; ++t)
        for (std::int64_t h = 0; h < x.shape[2]; ++h) {
          const std::int64_t at = b * x.strides[0] + t * x.strides[1] + h * x.strides[2];
          std::memcpy(out, static_cast<const unsigned char*>(x.data) + at * dtype_size(x.dtype),
                      row);
          out += row;
        }
  }

  void chunk_scatter_backward(const Plan& plan, const std::int32_t* indices,
                              const std::int32_t* position, const TensorView& dout,
                              const void* next_dout, void* do_sel,
                              const Options& options) override {
    StageClock clock(options.times);
    scatter_rows_backward(plan, dout, indices, do_sel, resolve_threads(options.threads));
    if (next_dout) scatter_backward_edge_rows(plan, dout, position, next_dout, do_sel);
    clock.lap(&StageTimes::scatter);
  }

  void chunk_gather_backward(const Plan& plan, const std::int32_t* position, const void* dq_sel,
                             const void* dk_sel, const void* dv_sel, const TensorView& dq,
                             const TensorView& dk, const TensorView& dv,
                             const Options& options) override {
    const int threads = resolve_threads(options.threads);
    StageClock clock(options.times);
    gather_rows_backward(plan, dq_sel, position, dq, threads);
    gather_rows_backward(plan, dk_sel, position, dk, threads);
    gather_rows_backward(plan, dv_sel, position, dv, threads);
    clock.lap(&StageTimes::gather);
  }

  void rows_attention_forward(const Plan& plan, DType dtype, const void* q, const void* k,
                              const void* v, void* o, void* stats,
                              const Options& options) override {
    StageClock clock(options.times);
    dispatch_float(dtype, [&](auto zero) {
      using T = decltype(zero);
      rows_attention<T>(plan, static_cast<const T*>(q), static_cast<const T*>(k),
                        static_cast<const T*>(v), static_cast<T*>(o), static_cast<T*>(stats),
                        resolve_threads(options.threads));
    });
    clock.lap(&StageTimes::attention);
  }

  void rows_attention_backward(const Plan& plan, DType dtype, const void* q, const void* k,
                               const void* v, const void* o, const void* stats, const void* dout,
                               void* dq, void* dk, void* dv, const Options& options) override {
    StageClock clock(options.times);
    dispatch_float(dtype, [&](auto zero) {
      using T = decltype(zero);
      cpu::rows_attention_backward<T>(plan, static_cast<const T*>(q), static_cast<const T*>(k),
                                      static_cast<const T*>(v), static_cast<const T*>(o),
                                      static_cast<const T*>(stats), static_cast<const T*>(dout),
                                      static_cast<T*>(dq), static_cast<T*>(dk), static_cast<T*>(dv),
                                      resolve_threads(options.threads));
    });
    clock.lap(&StageTimes::attention);
  }

  void copy_2d(void* dst, std::size_t dpitch, const void* src, std::size_t spitch,
               std::size_t width, std::size_t height, const Options&) override {
    for (std::size_t r = 0; r < height; ++r) {
      std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                  width);
    }
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
