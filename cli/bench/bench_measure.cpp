#include "bench/bench_measure.hpp"

#include <algorithm>
#include <functional>
#include <optional>
#include <vector>

#include "lighthouse/device.hpp"

namespace lighthouse::cli {

const char* impl_name(Impl impl) {
  switch (impl) {
    case Impl::kDense:
      return "dense";
    case Impl::kLighthouse:
      return "lighthouse";
    case Impl::kFloor:
      return "floor";
  }
  return "?";
}

namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Counter-based, so that the fill parallelises and is still one fixed sequence.
void fill_uniform(std::vector<float>& data, std::uint64_t key) {
  const auto n = static_cast<std::int64_t>(data.size());
  float* out = data.data();
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint64_t bits = splitmix64(key + static_cast<std::uint64_t>(i));
    out[i] = static_cast<float>(bits >> 40) * 0x1p-23f - 1.0f;  // 24 random bits -> [-1, 1)
  }
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t m = values.size() / 2;
  return values.size() % 2 ? values[m] : 0.5 * (values[m - 1] + values[m]);
}

StageTimes median_stages(const std::vector<StageTimes>& runs) {
  auto field = [&](double StageTimes::*member) {
    std::vector<double> v;
    for (const StageTimes& t : runs) v.push_back(t.*member);
    return median(v);
  };
  StageTimes m;
  m.pyramid = field(&StageTimes::pyramid);
  m.selection = field(&StageTimes::selection);
  m.gather = field(&StageTimes::gather);
  m.attention = field(&StageTimes::attention);
  m.scatter = field(&StageTimes::scatter);
  return m;
}

}  // namespace

HostInputs random_inputs(std::uint64_t seed, const Shape4& shape, std::int64_t kv_heads) {
  HostInputs in;
  in.shape = shape;
  in.kv_heads = kv_heads;
  const auto count = static_cast<std::size_t>(shape[0] * shape[1] * shape[2] * shape[3]);
  const Shape4 kv = in.kv_shape();
  const auto kv_count = static_cast<std::size_t>(kv[0] * kv[1] * kv[2] * kv[3]);
  std::vector<float>* tensors[] = {&in.q, &in.k, &in.v, &in.dout};
  for (std::uint64_t t = 0; t < 4; ++t) {
    tensors[t]->resize(t == 1 || t == 2 ? kv_count : count);
    // Distinct, well-separated streams per (seed, N, tensor).
    const std::uint64_t key =
        splitmix64(seed ^ splitmix64(static_cast<std::uint64_t>(shape[1]) * 4 + t));
    fill_uniform(*tensors[t], key);
  }
  return in;
}

HostInputs first_tokens(const HostInputs& in, std::int64_t length) {
  HostInputs out;
  out.shape = in.shape;
  out.shape[1] = length;
  out.kv_heads = in.kv_heads;
  const std::vector<float>* src[] = {&in.q, &in.k, &in.v, &in.dout};
  std::vector<float>* dst[] = {&out.q, &out.k, &out.v, &out.dout};
  for (int t = 0; t < 4; ++t) {
    // One token: H * D values (k, v: Hkv * D).
    const std::int64_t row = (t == 1 || t == 2 ? in.kv_shape()[2] : in.shape[2]) * in.shape[3];
    dst[t]->reserve(static_cast<std::size_t>(in.shape[0] * length * row));
    for (std::int64_t b = 0; b < in.shape[0]; ++b) {
      const auto begin = src[t]->begin() + b * in.shape[1] * row;
      dst[t]->insert(dst[t]->end(), begin, begin + length * row);
    }
  }
  return out;
}

namespace {

// Device memory held by the runs from construction on, caches included: with caching pools and
// workspaces that only grow, their peak. The caches are released first; nothing on the CPU.
class PeakMemory {
 public:
  explicit PeakMemory(Device device) : device_(device) {
    synchronize(device_);
    release_cached_memory(device_);
    before_ = memory_in_use(device_);
  }
  std::optional<std::int64_t> peak() const {
    synchronize(device_);
    if (before_ < 0) return std::nullopt;
    return memory_in_use(device_) - before_;
  }

 private:
  Device device_;
  std::int64_t before_ = -1;
};

// One implementation's tensors on the device and the context of its last forward.
class Subject {
 public:
  Subject(const Config& config, const HostInputs& in, const MeasureSetup& setup)
      : config_(config),
        q_(upload(in.q.data(), in.shape, setup.dtype, setup.device)),
        k_(upload(in.k.data(), in.kv_shape(), setup.dtype, setup.device)),
        v_(upload(in.v.data(), in.kv_shape(), setup.dtype, setup.device)),
        dout_(upload(in.dout.data(), in.shape, setup.dtype, setup.device)),
        out_(allocate(in.shape, setup.dtype, setup.device)),
        dq_(allocate(in.shape, setup.dtype, setup.device)),
        dk_(allocate(in.kv_shape(), setup.dtype, setup.device)),
        dv_(allocate(in.kv_shape(), setup.dtype, setup.device)) {
    options_.threads = setup.threads;
    options_.deterministic = setup.deterministic;
    if (!in.cu_seqlens.empty()) {
      cu_seqlens_ = Tensor::empty(DType::kInt32, setup.device,
                                  {static_cast<std::int64_t>(in.cu_seqlens.size())});
      copy_from_host(setup.device, cu_seqlens_.data<void>(), in.cu_seqlens.data(),
                     in.cu_seqlens.size() * sizeof(std::int32_t));
    }
  }

  // A fresh context per forward: the previous one's buffers are released first, so two of one
  // subject are never alive at once.
  void forward(StageTimes* times = nullptr) {
    ctx_ = Context{};
    if (cu_seqlens_.defined()) {
      lighthouse::forward(config_, q_, k_, v_, out_, cu_seqlens_, ctx_, with(times));
    } else {
      lighthouse::forward(config_, q_, k_, v_, out_, ctx_, with(times));
    }
  }
  // On the context of the last forward.
  void backward(StageTimes* times = nullptr) {
    lighthouse::backward(ctx_, dout_, dq_, dk_, dv_, with(times));
  }
  void forward_backward() {
    forward();
    backward();
  }

 private:
  Options with(StageTimes* times) const {
    Options o = options_;
    o.times = times;
    return o;
  }

  Config config_;
  Tensor q_, k_, v_, dout_, out_, dq_, dk_, dv_;
  Tensor cu_seqlens_;  // packed documents, else undefined
  Options options_;
  Context ctx_;
};

// A configuration whose fwd+bwd takes over a second (dense attention at N >= 256K on an H200)
// varies by well under 1% between runs: one warm-up and three repeats measure it, and keep a
// whole sweep within one device call.
bool is_long_run(double first_fwd_bwd_ms) {
  return first_fwd_bwd_ms > kLongRunMs;
}

// CUDA: `repeats` forward and backward runs with stage times (they add synchronisations, so
// these runs are not the timed ones).
void stage_runs(Device device, Subject& s, int repeats, std::vector<StageTimes>& fwd,
                std::vector<StageTimes>& bwd) {
  for (int r = 0; r < repeats; ++r) {
    StageTimes sf, sb;
    s.forward(&sf);
    s.backward(&sb);
    fwd.push_back(sf);
    bwd.push_back(sb);
  }
  synchronize(device);
}

// What measure_side_by_side() measures of each implementation alone.
struct Alone {
  bool long_run = false;
  std::optional<StageTimes> stages_fwd, stages_bwd;
  std::optional<std::int64_t> peak_device_bytes;
};

// One fwd+bwd (the first, for the > 1 s rule; it also grows every workspace and builds every
// cuDNN graph the implementation needs), then on CUDA with `stages` the per-stage runs, from
// released caches: the memory held at the end is this implementation's peak.
Alone measure_alone(Device device, const MeasureCase& c, const MeasureSetup& setup) {
  const PeakMemory memory(device);
  Subject s(c.config, c.inputs, setup);
  Alone alone;
  alone.long_run = is_long_run(time_ms(device, [&] { s.forward_backward(); }));
  if (setup.device != Device::kCPU && setup.stages) {
    std::vector<StageTimes> fwd, bwd;
    stage_runs(device, s, alone.long_run ? std::min(setup.repeats, 3) : setup.repeats, fwd, bwd);
    alone.stages_fwd = median_stages(fwd);
    alone.stages_bwd = median_stages(bwd);
  }
  alone.peak_device_bytes = memory.peak();
  return alone;
}

}  // namespace

Timing measure(const Config& config, const HostInputs& in, const MeasureSetup& setup) {
  const Device device = setup.device;
  const PeakMemory memory(device);
  Subject s(config, in, setup);

  int warmup = setup.warmup, repeats = setup.repeats;
  for (int w = 0; w < warmup; ++w) {
    const double ms = time_ms(device, [&] { s.forward_backward(); });
    if (w == 0 && is_long_run(ms)) {
      warmup = 1;
      repeats = std::min(repeats, 3);
    }
  }
  synchronize(device);

  // On the CPU the stage timers cost nothing, so the timed runs fill them; on CUDA they add
  // synchronisations and get runs of their own below.
  const bool cpu = setup.device == Device::kCPU;
  Timing timing;
  std::vector<double> fwd, bwd, both;
  std::vector<StageTimes> stages_fwd, stages_bwd;
  for (int r = 0; r < repeats; ++r) {
    StageTimes st;
    fwd.push_back(time_ms(device, [&] { s.forward(cpu ? &st : nullptr); }));
    if (cpu) stages_fwd.push_back(st);
  }
  for (int r = 0; r < repeats; ++r) {
    StageTimes st;
    bwd.push_back(time_ms(device, [&] { s.backward(cpu ? &st : nullptr); }));
    if (cpu) stages_bwd.push_back(st);
  }
  for (int r = 0; r < repeats; ++r) {
    both.push_back(time_ms(device, [&] { s.forward_backward(); }));
  }
  if (!cpu && setup.interleaved) {
    std::vector<double> f, b, fb;
    for (int r = 0; r < repeats; ++r) {
      f.push_back(time_ms(device, [&] { s.forward(); }));
      b.push_back(time_ms(device, [&] { s.backward(); }));
      fb.push_back(time_ms(device, [&] { s.forward_backward(); }));
    }
    timing.interleaved_fwd_ms = median(f);
    timing.interleaved_bwd_ms = median(b);
    timing.interleaved_fwd_bwd_ms = median(fb);
  }
  if (!cpu && setup.stages) stage_runs(device, s, repeats, stages_fwd, stages_bwd);
  timing.fwd_ms = median(fwd);
  timing.bwd_ms = median(bwd);
  timing.fwd_bwd_ms = median(both);
  if (!stages_fwd.empty()) timing.stages_fwd = median_stages(stages_fwd);
  if (!stages_bwd.empty()) timing.stages_bwd = median_stages(stages_bwd);
  timing.peak_device_bytes = memory.peak();
  return timing;
}

std::array<Timing, 2> measure_side_by_side(const std::array<MeasureCase, 2>& cases,
                                           const MeasureSetup& setup) {
  const Device device = setup.device;
  const bool cpu = setup.device == Device::kCPU;
  std::array<Timing, 2> timing;
  bool any_long = false;
  for (std::size_t i = 0; i < 2; ++i) {
    const Alone alone = measure_alone(device, cases[i], setup);
    any_long = any_long || alone.long_run;
    timing[i].stages_fwd = alone.stages_fwd;
    timing[i].stages_bwd = alone.stages_bwd;
    timing[i].peak_device_bytes = alone.peak_device_bytes;
  }
  const int warmup = any_long ? std::min(setup.warmup, 1) : setup.warmup;
  const int repeats = any_long ? std::min(setup.repeats, 3) : setup.repeats;

  // Both alive from here on; the caches left by the last run alone are released so that the
  // warm-up grows them for the two together.
  synchronize(device);
  release_cached_memory(device);
  Subject a(cases[0].config, cases[0].inputs, setup);
  Subject b(cases[1].config, cases[1].inputs, setup);
  const std::array<Subject*, 2> subjects{&a, &b};
  for (int w = 0; w < warmup; ++w) {
    for (Subject* s : subjects) s->forward_backward();
  }
  synchronize(device);

  // As in measure(), the CPU's stage times come from the timed runs.
  std::array<std::vector<double>, 2> fwd, bwd, both;
  std::array<std::vector<StageTimes>, 2> stages_fwd, stages_bwd;
  for (int r = 0; r < repeats; ++r) {
    for (std::size_t i = 0; i < 2; ++i) {
      StageTimes st;
      fwd[i].push_back(time_ms(device, [&] { subjects[i]->forward(cpu ? &st : nullptr); }));
      if (cpu) stages_fwd[i].push_back(st);
    }
    for (std::size_t i = 0; i < 2; ++i) {
      StageTimes st;
      bwd[i].push_back(time_ms(device, [&] { subjects[i]->backward(cpu ? &st : nullptr); }));
      if (cpu) stages_bwd[i].push_back(st);
    }
    for (std::size_t i = 0; i < 2; ++i) {
      both[i].push_back(time_ms(device, [&] { subjects[i]->forward_backward(); }));
    }
  }
  for (std::size_t i = 0; i < 2; ++i) {
    timing[i].fwd_ms = median(fwd[i]);
    timing[i].bwd_ms = median(bwd[i]);
    timing[i].fwd_bwd_ms = median(both[i]);
    timing[i].side_by_side = true;
    if (cpu) {
      timing[i].stages_fwd = median_stages(stages_fwd[i]);
      timing[i].stages_bwd = median_stages(stages_bwd[i]);
    }
  }
  synchronize(device);
  return timing;
}

}  // namespace lighthouse::cli
