#include "support/library_runs.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>

#include "support/attention_case.hpp"

namespace lighthouse::testing {
namespace {

std::vector<unsigned char> encode(const std::vector<float>& x, DType dtype) {
  const std::size_t size = dtype_size(dtype);
  std::vector<unsigned char> bytes(x.size() * size);
  if (dtype == DType::kBFloat16 || dtype == DType::kFloat16) {
    const std::vector<std::uint16_t> bits = to_half_bits(x, dtype);
    std::memcpy(bytes.data(), bits.data(), bytes.size());
  } else if (dtype == DType::kFloat64) {
    const std::vector<double> wide(x.begin(), x.end());
    std::memcpy(bytes.data(), wide.data(), bytes.size());
  } else if (dtype == DType::kFloat32) {
    std::memcpy(bytes.data(), x.data(), bytes.size());
  } else {
    ADD_FAILURE() << "encode: unexpected dtype " << dtype_name(dtype);
  }
  return bytes;
}

std::vector<float> decode(const std::vector<unsigned char>& bytes, DType dtype) {
  const std::size_t n = bytes.size() / dtype_size(dtype);
  std::vector<float> x(n);
  if (dtype == DType::kBFloat16 || dtype == DType::kFloat16) {
    std::vector<std::uint16_t> bits(n);
    std::memcpy(bits.data(), bytes.data(), bytes.size());
    x = from_half_bits(bits, dtype);
  } else if (dtype == DType::kFloat64) {
    std::vector<double> wide(n);
    std::memcpy(wide.data(), bytes.data(), bytes.size());
    for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(wide[i]);
  } else if (dtype == DType::kFloat32) {
    std::memcpy(x.data(), bytes.data(), bytes.size());
  } else {
    ADD_FAILURE() << "decode: unexpected dtype " << dtype_name(dtype);
  }
  return x;
}

// A [B, N, H, D] tensor on `device`; with `strided`, a view of a [B, H, N, D] buffer.
struct Buffer {
  Tensor storage;
  TensorView view;
};

std::size_t bnhd_to_bhnd(const Shape& s, std::size_t i) {
  const std::int64_t d = static_cast<std::int64_t>(i) % s.D;
  std::int64_t r = static_cast<std::int64_t>(i) / s.D;
  const std::int64_t h = r % s.H;
  r /= s.H;
  const std::int64_t n = r % s.N;
  const std::int64_t b = r / s.N;
  return static_cast<std::size_t>(((b * s.H + h) * s.N + n) * s.D + d);
}

Buffer make_buffer(const Shape& s, DType dtype, Device device, bool strided) {
  Buffer buf;
  if (strided) {
    buf.storage = Tensor::empty(dtype, device, {s.B, s.H, s.N, s.D});
    buf.view = buf.storage.view().transposed(1, 2);
  } else {
    buf.storage = Tensor::empty(dtype, device, {s.B, s.N, s.H, s.D});
    buf.view = buf.storage.view();
  }
  return buf;
}

void upload(const Buffer& buf, const Shape& s, const std::vector<float>& x, bool strided) {
  std::vector<float> ordered = x;
  if (strided) {
    for (std::size_t i = 0; i < x.size(); ++i) ordered[bnhd_to_bhnd(s, i)] = x[i];
  }
  const std::vector<unsigned char> bytes = encode(ordered, buf.view.dtype);
  if (buf.view.device == Device::kCPU) {
    std::memcpy(buf.storage.data<void>(), bytes.data(), bytes.size());
  } else {
    copy_from_host(Device::kCUDA, buf.storage.data<void>(), bytes.data(), bytes.size());
  }
}

std::vector<float> download(const Buffer& buf, const Shape& s, bool strided) {
  std::vector<unsigned char> bytes(buf.storage.view().nbytes());
  if (buf.view.device == Device::kCPU) {
    std::memcpy(bytes.data(), buf.storage.data<void>(), bytes.size());
  } else {
    copy_to_host(Device::kCUDA, bytes.data(), buf.storage.data<void>(), bytes.size());
  }
  const std::vector<float> ordered = decode(bytes, buf.view.dtype);
  if (!strided) return ordered;
  std::vector<float> x(ordered.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = ordered[bnhd_to_bhnd(s, i)];
  return x;
}

}  // namespace

Outputs run(const Inputs& in, Device device, DType dtype, const Config& cfg,
            const RunFlags& flags) {
  const Shape& s = in.shape;
  const bool st = flags.strided, sg = flags.strided_grads;
  Buffer q = make_buffer(s, dtype, device, st), k = make_buffer(s, dtype, device, st),
         v = make_buffer(s, dtype, device, st);
  const Buffer out = flags.out_in_q ? q : make_buffer(s, dtype, device, st);
  upload(q, s, in.q, st);
  upload(k, s, in.k, st);
  upload(v, s, in.v, st);
  Outputs result;
  Options options;
  options.deterministic = flags.deterministic;
  options.check_finite = flags.check_finite;
  if (flags.timed) options.times = &result.forward_times;
  Context ctx;
  const bool packed = !flags.cu_seqlens.empty();
  Tensor offsets;
  if (packed) {
    offsets =
        Tensor::empty(DType::kInt32, device, {static_cast<std::int64_t>(flags.cu_seqlens.size())});
    copy_from_host(device, offsets.data<void>(), flags.cu_seqlens.data(),
                   flags.cu_seqlens.size() * sizeof(std::int32_t));
  }
  // The ContextBuffer variant: device memory of context_bytes(), indices read at their offset.
  const Plan plan = make_plan(cfg, s.B, s.N, s.H, s.D);
  const std::size_t context_size =
      packed ? context_bytes_varlen(cfg, s.B * s.N,
                                    static_cast<std::int64_t>(flags.cu_seqlens.size()) - 1, s.H,
                                    s.H, s.D, dtype)
             : context_bytes(plan, dtype);
  const Tensor memory = flags.context_buffer
                            ? Tensor::empty(DType::kInt32, device,
                                            {static_cast<std::int64_t>((context_size + 3) / 4)})
                            : Tensor();
  const ContextBuffer buffer{memory.data<void>(), memory.view().nbytes()};
  if (flags.context_buffer && packed) {
    forward(cfg, q.view, k.view, v.view, out.view, offsets, buffer, options);
  } else if (flags.context_buffer) {
    forward(cfg, q.view, k.view, v.view, out.view, buffer, options);
    result.indices.resize(static_cast<std::size_t>(plan.batch * plan.heads * plan.S));
    synchronize(device);
    copy_to_host(device, result.indices.data(),
                 static_cast<const char*>(buffer.data) + context_indices_offset(plan, dtype),
                 result.indices.size() * sizeof(std::int32_t));
  } else if (packed) {
    forward(cfg, q.view, k.view, v.view, out.view, offsets, ctx, options);
    result.indices = ctx.indices();
  } else {
    forward(cfg, q.view, k.view, v.view, out.view, ctx, options);
    result.indices = ctx.indices();
  }
  result.out = download(out, s, st);
  if (flags.backward) {
    Buffer dout = make_buffer(s, dtype, device, sg), dk = make_buffer(s, dtype, device, sg),
           dv = make_buffer(s, dtype, device, sg);
    const Buffer dq = flags.dout_in_dq ? dout : make_buffer(s, dtype, device, sg);
    upload(dout, s, in.dout, sg);
    if (flags.timed) options.times = &result.backward_times;
    if (flags.context_buffer && packed) {
      backward(cfg, offsets, buffer, dout.view, dq.view, dk.view, dv.view, options);
    } else if (flags.context_buffer) {
      backward(cfg, buffer, dout.view, dq.view, dk.view, dv.view, options);
    } else {
      backward(ctx, dout.view, dq.view, dk.view, dv.view, options);
    }
    result.dq = download(dq, s, sg);
    result.dk = download(dk, s, sg);
    result.dv = download(dv, s, sg);
  }
  return result;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_close(const Outputs& got, const Outputs& ref, double tol, const std::string& what) {
  EXPECT_LT(rel_l2(got.out, ref.out), tol) << what << ": out";
  EXPECT_LT(rel_l2(got.dq, ref.dq), tol) << what << ": dq";
  EXPECT_LT(rel_l2(got.dk, ref.dk), tol) << what << ": dk";
  EXPECT_LT(rel_l2(got.dv, ref.dv), tol) << what << ": dv";
}

// Where two index lists first differ, for failure messages.
std::string first_difference(const std::vector<std::int32_t>& a,
                             const std::vector<std::int32_t>& b) {
  if (a.size() != b.size())
    return "sizes " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      return "at " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " +
             std::to_string(b[i]);
    }
  }
  return "none";
}

bool cpu_available() {
  return backend_available(Device::kCPU);
}

void round_to(std::vector<float>& x, DType dtype) {
  if (dtype != DType::kBFloat16 && dtype != DType::kFloat16) return;
  x = from_half_bits(to_half_bits(x, dtype), dtype);
}

void round_inputs(Inputs& in, DType dtype) {
  for (auto* x : {&in.q, &in.k, &in.v, &in.dout}) round_to(*x, dtype);
}

Inputs random_inputs(Shape s, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  Inputs in{s, {}, {}, {}, {}};
  for (auto* x : {&in.q, &in.k, &in.v, &in.dout}) {
    x->resize(static_cast<std::size_t>(s.numel()));
    for (float& f : *x) f = normal(gen);
  }
  return in;
}

std::vector<std::int32_t> reference_indices(const Inputs& in, const Config& cfg) {
  return lhtest::select(cfg, in.shape, std::vector<double>(in.q.begin(), in.q.end()),
                        std::vector<double>(in.k.begin(), in.k.end()));
}

Config config_of(const Case& c) {
  Config cfg;
  cfg.levels = c.levels;
  cfg.pool = c.pool;
  cfg.topk = c.topk;
  return cfg;
}

Config causal_of(const Case& c) {
  Config cfg = config_of(c);
  cfg.selection = Selection::kCausal;
  return cfg;
}

std::string name_of(const Case& c) {
  std::ostringstream os;
  os << "B" << c.shape.B << "_N" << c.shape.N << "_H" << c.shape.H << "_D" << c.shape.D << "_L"
     << c.levels << "_p" << c.pool << "_K" << c.topk;
  return os.str();
}

const std::vector<Case>& selection_size_classes() {
  static const std::vector<Case> cases = {
      {{2, 1024, 3, 64}, 2, 2, 256}, {{2, 4096, 2, 128}, 3, 4, 128},
      {{1, 4096, 2, 64}, 4, 2, 256}, {{2, 2048, 2, 128}, 2, 8, 128},
      {{1, 8192, 2, 64}, 3, 8, 128}, {{1, 32768, 2, 64}, 3, 16, 128},
      {{2, 2048, 3, 20}, 2, 4, 128}, {{1, 16384, 1, 32}, 2, 8, 128},
      {{1, 65536, 1, 8}, 2, 2, 128},
  };
  return cases;
}

Outputs expect_gpu_matches_cpu(const Inputs& in, const Config& cfg, bool backward,
                               const std::string& what) {
  const Outputs gpu = run(in, Device::kCUDA, DType::kFloat32, cfg, {.backward = backward});
  const Outputs cpu = run(in, Device::kCPU, DType::kFloat32, cfg, {.backward = backward});
  EXPECT_EQ(gpu.indices, cpu.indices)
      << what << ": first difference " << first_difference(gpu.indices, cpu.indices);
  // Other selections give other outputs: their distance says nothing more.
  if (backward && gpu.indices == cpu.indices) expect_close(gpu, cpu, 1e-5, what);
  return gpu;
}

void expect_bf16_selects_like_cpu(const Inputs& in, const Config& cfg) {
  Inputs rounded = in;
  round_inputs(rounded, DType::kBFloat16);
  const Outputs gpu = run(rounded, Device::kCUDA, DType::kBFloat16, cfg, {.backward = false});
  const Outputs cpu = run(rounded, Device::kCPU, DType::kFloat32, cfg, {.backward = false});
  EXPECT_EQ(gpu.indices, cpu.indices)
      << "bf16, first difference " << first_difference(gpu.indices, cpu.indices);
}

Inputs tied_inputs(Shape s, int mode, std::uint32_t seed, std::uint32_t tie_seed) {
  Inputs in = random_inputs(s, seed);
  std::mt19937 gen(tie_seed);
  std::uniform_int_distribution<int> pick(-1, 1);
  for (auto* x : {&in.q, &in.k}) {
    for (float& f : *x) f = mode == 0 ? static_cast<float>(pick(gen)) : (f < 0 ? -1.f : 1.f);
  }
  return in;
}

}  // namespace lighthouse::testing
