#include "bench_measure.hpp"

#include <algorithm>
#include <functional>

#include "lighthouse/backend.hpp"

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

HostInputs random_inputs(std::uint64_t seed, const Shape4& shape) {
  HostInputs in;
  in.shape = shape;
  const auto count = static_cast<std::size_t>(shape[0] * shape[1] * shape[2] * shape[3]);
  std::vector<float>* tensors[] = {&in.q, &in.k, &in.v, &in.dout};
  for (std::uint64_t t = 0; t < 4; ++t) {
    tensors[t]->resize(count);
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
  const std::int64_t row = in.shape[2] * in.shape[3];  // one token: H * D values
  const std::vector<float>* src[] = {&in.q, &in.k, &in.v, &in.dout};
  std::vector<float>* dst[] = {&out.q, &out.k, &out.v, &out.dout};
  for (int t = 0; t < 4; ++t) {
    dst[t]->reserve(static_cast<std::size_t>(in.shape[0] * length * row));
    for (std::int64_t b = 0; b < in.shape[0]; ++b) {
      const auto begin = src[t]->begin() + b * in.shape[1] * row;
      dst[t]->insert(dst[t]->end(), begin, begin + length * row);
    }
  }
  return out;
}

Timing measure(const Config& config, const HostInputs& in, const MeasureSetup& setup) {
  Backend& backend = backend_for(setup.device);
  backend.synchronize();
  backend.release_cached_memory();
  const std::int64_t memory_before = backend.memory_in_use();
  const Tensor q = upload(in.q.data(), in.shape, setup.dtype, setup.device);
  const Tensor k = upload(in.k.data(), in.shape, setup.dtype, setup.device);
  const Tensor v = upload(in.v.data(), in.shape, setup.dtype, setup.device);
  const Tensor dout = upload(in.dout.data(), in.shape, setup.dtype, setup.device);
  const Tensor out = allocate(in.shape, setup.dtype, setup.device);
  const Tensor dq = allocate(in.shape, setup.dtype, setup.device);
  const Tensor dk = allocate(in.shape, setup.dtype, setup.device);
  const Tensor dv = allocate(in.shape, setup.dtype, setup.device);

  Options options;
  options.threads = setup.threads;
  options.deterministic = setup.deterministic;
  Context ctx;
  // A fresh context per forward: the previous one's buffers are released first, so two are
  // never alive at once.
  auto run_forward = [&](const Options& o) {
    ctx = Context{};
    forward(config, q, k, v, out, ctx, o);
  };
  auto run_backward = [&](const Options& o) { backward(ctx, dout, dq, dk, dv, o); };

  // A configuration whose fwd+bwd takes over a second (dense attention at N >= 256K on an
  // H200) varies by well under 1% between runs: one warm-up and three repeats measure it, and
  // keep a whole sweep within one device call.
  int warmup = setup.warmup, repeats = setup.repeats;
  for (int w = 0; w < warmup; ++w) {
    const double ms = backend.time_ms([&] {
      run_forward(options);
      run_backward(options);
    });
    if (w == 0 && ms > kLongRunMs) {
      warmup = 1;
      repeats = std::min(repeats, 3);
    }
  }
  backend.synchronize();

  // On the CPU the stage timers cost nothing, so the timed runs fill them; on CUDA they add
  // synchronisations and get runs of their own below.
  const bool cpu = setup.device == Device::kCPU;
  Timing timing;
  std::vector<double> fwd, bwd, both;
  std::vector<StageTimes> stages_fwd, stages_bwd;
  for (int r = 0; r < repeats; ++r) {
    StageTimes st;
    Options o = options;
    if (cpu) o.times = &st;
    fwd.push_back(backend.time_ms([&] { run_forward(o); }));
    if (cpu) stages_fwd.push_back(st);
  }
  for (int r = 0; r < repeats; ++r) {
    StageTimes st;
    Options o = options;
    if (cpu) o.times = &st;
    bwd.push_back(backend.time_ms([&] { run_backward(o); }));
    if (cpu) stages_bwd.push_back(st);
  }
  for (int r = 0; r < repeats; ++r) {
    both.push_back(backend.time_ms([&] {
      run_forward(options);
      run_backward(options);
    }));
  }
  if (!cpu && setup.interleaved) {
    std::vector<double> f, b, fb;
    for (int r = 0; r < repeats; ++r) {
      f.push_back(backend.time_ms([&] { run_forward(options); }));
      b.push_back(backend.time_ms([&] { run_backward(options); }));
      fb.push_back(backend.time_ms([&] {
        run_forward(options);
        run_backward(options);
      }));
    }
    timing.interleaved_fwd_ms = median(f);
    timing.interleaved_bwd_ms = median(b);
    timing.interleaved_fwd_bwd_ms = median(fb);
  }
  if (!cpu && setup.stages) {
    for (int r = 0; r < repeats; ++r) {
      StageTimes sf, sb;
      Options of = options, ob = options;
      of.times = &sf;
      ob.times = &sb;
      run_forward(of);
      run_backward(ob);
      stages_fwd.push_back(sf);
      stages_bwd.push_back(sb);
    }
    backend.synchronize();
  }
  timing.fwd_ms = median(fwd);
  timing.bwd_ms = median(bwd);
  timing.fwd_bwd_ms = median(both);
  if (!stages_fwd.empty()) timing.stages_fwd = median_stages(stages_fwd);
  if (!stages_bwd.empty()) timing.stages_bwd = median_stages(stages_bwd);
  backend.synchronize();
  if (memory_before >= 0) timing.peak_device_bytes = backend.memory_in_use() - memory_before;
  return timing;
}

}  // namespace lighthouse::cli
