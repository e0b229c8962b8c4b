// Timing implementations at one sequence length for `lighthouse bench`: random inputs, warm-up,
// then forward alone, backward alone (from a forward's context) and forward+backward, each the
// median of the repeats, timed by Backend::time_ms (CUDA events on the GPU, wall clock on the
// CPU) so that all device work is inside the measurement.
//
// measure(): one implementation, the three in separate loops (fwd x R with a fresh context each,
// bwd x R on one context, fwd+bwd x R); on CUDA optionally interleaved runs and per-stage runs.
//
// measure_side_by_side(): two implementations (Lighthouse and its floor), timed in ONE loop whose
// every repeat runs a fwd, b fwd, a bwd, b bwd, a fwd+bwd, b fwd+bwd (each bwd on the context of
// the fwd just before it), so that a ratio of their medians compares numbers measured side by
// side: the GPU's speed drifts by up to ~10% between loops run one after another (docs/PERF.md,
// fourth run). Both problems are alive during that loop, so each one's peak memory (and, on CUDA
// with `stages`, its per-stage runs) comes from a run of its own first, with the other's buffers
// and the caches released.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/device_io.hpp"
#include "lighthouse/attention.hpp"

namespace lighthouse::cli {

enum class Impl { kDense, kLighthouse, kFloor };
const char* impl_name(Impl impl);

struct HostInputs {
  Shape4 shape{};             // [B, N, H, D]: q, dout (and out, dq)
  std::int64_t kv_heads = 0;  // k, v (and dk, dv) are [B, N, kv_heads, D]; 0 = H
  std::vector<float> q, k, v, dout;
  // Packed documents (`bench --packed-docs`): offsets passed as cu_seqlens; empty: one sequence
  // per row.
  std::vector<std::int32_t> cu_seqlens;
  Shape4 kv_shape() const { return {shape[0], shape[1], kv_heads ? kv_heads : shape[2], shape[3]}; }
};

// Uniform values in [-1, 1), a pure function of (seed, shape): the same on every run and machine.
HostInputs random_inputs(std::uint64_t seed, const Shape4& shape, std::int64_t kv_heads = 0);
// The first `length` tokens of every batch row (length <= N).
HostInputs first_tokens(const HostInputs& inputs, std::int64_t length);

// A fwd+bwd longer than this (first warm-up) is measured with 1 warm-up and at most 3 repeats.
inline constexpr double kLongRunMs = 1000.0;

struct MeasureSetup {
  Device device = Device::kCPU;
  DType dtype = DType::kFloat32;
  int repeats = 3, warmup = 1, threads = 0;
  bool deterministic = true;  // Options::deterministic (CUDA attention backward)
  bool stages = false;       // on CUDA, extra runs with per-stage timing (it adds synchronisations)
  bool interleaved = false;  // on CUDA, extra interleaved runs (Timing::interleaved_*)
};

struct Timing {
  double fwd_ms = 0, bwd_ms = 0, fwd_bwd_ms = 0;
  // The three above come from measure_side_by_side()'s alternating loop, which interleaves them
  // as well (then the interleaved_* below stay empty), not from three separate loops.
  bool side_by_side = false;
  // measure() only: the same three, measured interleaved (each repeat: a forward, the backward of
  // its fresh context, then a forward+backward), medians (CUDA, MeasureSetup::interleaved).
  // Against the three above, which are measured in three separate loops (the backward always on
  // the same context), it tells a cost of running the two back to back from a drift over the runs.
  std::optional<double> interleaved_fwd_ms, interleaved_bwd_ms, interleaved_fwd_bwd_ms;
  std::optional<StageTimes> stages_fwd, stages_bwd;  // per-stage medians
  // Device memory held at the end of the runs, caches included, minus before them (CUDA only):
  // with caching pools and workspaces that only grow, this is the peak of the runs. Side by
  // side: of this implementation's own runs before the shared loop.
  std::optional<std::int64_t> peak_device_bytes;
};

Timing measure(const Config& config, const HostInputs& inputs, const MeasureSetup& setup);

struct MeasureCase {
  const Config& config;
  const HostInputs& inputs;
};
// setup.interleaved is not used: the shared loop is interleaved itself.
std::array<Timing, 2> measure_side_by_side(const std::array<MeasureCase, 2>& cases,
                                           const MeasureSetup& setup);

}  // namespace lighthouse::cli
