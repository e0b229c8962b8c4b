// Timing one implementation at one sequence length for `lighthouse bench`: random inputs, warm-up,
// then forward alone, backward alone (from a forward's context) and forward+backward, each the
// median of the repeats, timed by Backend::time_ms (CUDA events on the GPU, wall clock on the
// CPU) so that all device work is inside the measurement.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "device_io.hpp"
#include "lighthouse/attention.hpp"

namespace lighthouse::cli {

enum class Impl { kDense, kLighthouse, kFloor };
const char* impl_name(Impl impl);

struct HostInputs {
  Shape4 shape{};  // [B, N, H, D]
  std::vector<float> q, k, v, dout;
};

// Uniform values in [-1, 1), a pure function of (seed, shape): the same on every run and machine.
HostInputs random_inputs(std::uint64_t seed, const Shape4& shape);
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
  // The same three, measured interleaved (each repeat: a forward, the backward of its fresh
  // context, then a forward+backward), medians (CUDA, MeasureSetup::interleaved). Against the three
  // above, which are measured in three separate loops (the backward always on the same context), it
  // tells a cost of running the two back to back from a drift over the runs.
  std::optional<double> interleaved_fwd_ms, interleaved_bwd_ms, interleaved_fwd_bwd_ms;
  std::optional<StageTimes> stages_fwd, stages_bwd;  // per-stage medians
  // Device memory held at the end of the runs, caches included, minus before them (CUDA only):
  // with caching pools and workspaces that only grow, this is the peak of the runs.
  std::optional<std::int64_t> peak_device_bytes;
};

Timing measure(const Config& config, const HostInputs& inputs, const MeasureSetup& setup);

}  // namespace lighthouse::cli
