// The CUDA backend end to end, through the public API: selected indices identical to the CPU
// backend's, outputs and gradients against the CPU backend (fp32) and the golden cases, half
// precision accuracy, causality, determinism, strided views, a sequence with S >= 65536, and the
// rejection of unsupported configurations. Every test skips when no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/buffer_reuse.hpp"
#include "cuda/cudnn_attention.hpp"
#include "lighthouse/device.hpp"
#include "lighthouse/lighthouse.hpp"
#include "lighthouse/npy.hpp"
#include "support/golden.hpp"

namespace lh = lighthouse;

namespace {

#define SKIP_WITHOUT_GPU()                                                   \
  do {                                                                       \
    if (!lh::backend_available(lh::Device::kCUDA)) GTEST_SKIP() << "no GPU"; \
  } while (0)

struct Shape {
  std::int64_t B, N, H, D;
  std::size_t numel() const { return static_cast<std::size_t>(B * N * H * D); }
};

// ---- host-side dtype conversion (round to nearest even)
// ------------------------------------------

std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::uint16_t to_bf16(float f) {
  const std::uint32_t u = bits_of(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float from_bf16(std::uint16_t h) {
  return float_of(static_cast<std::uint32_t>(h) << 16);
}

std::uint16_t to_fp16(float f) {
  const std::uint32_t x = bits_of(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const int biased = static_cast<int>((x >> 23) & 0xffu);
  std::uint32_t mant = x & 0x7fffffu;
  if (biased == 0xff) return static_cast<std::uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));
  const int exp = biased - 127 + 15;
  if (exp >= 31) return static_cast<std::uint16_t>(sign | 0x7c00u);
  if (exp <= 0) {  // subnormal half (or zero)
    if (exp < -10) return static_cast<std::uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - exp;
    std::uint32_t h = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1u);
    const std::uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  std::uint32_t h = (static_cast<std::uint32_t>(exp) << 10) | (mant >> 13);
  const std::uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry rounds up the exponent
  return static_cast<std::uint16_t>(sign | h);
}
float from_fp16(std::uint16_t h) {
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);
  } else if (exp == 31) {
    v = mant ? NAN : INFINITY;
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400), exp - 25);
  }
  return (h & 0x8000) ? -v : v;
}

// Rounds every value to `dtype`, so that all backends see the same numbers.
void round_to(std::vector<float>& x, lh::DType dtype) {
  for (float& f : x) {
    if (dtype == lh::DType::kBFloat16) f = from_bf16(to_bf16(f));
    if (dtype == lh::DType::kFloat16) f = from_fp16(to_fp16(f));
  }
}

std::vector<unsigned char> encode(const std::vector<float>& x, lh::DType dtype) {
  std::vector<unsigned char> bytes(x.size() * lh::dtype_size(dtype));
  for (std::size_t i = 0; i < x.size(); ++i) {
    unsigned char* p = bytes.data() + i * lh::dtype_size(dtype);
    switch (dtype) {
      case lh::DType::kFloat32:
        std::memcpy(p, &x[i], 4);
        break;
      case lh::DType::kFloat64: {
        const double d = x[i];
        std::memcpy(p, &d, 8);
        break;
      }
      case lh::DType::kBFloat16: {
        const std::uint16_t h = to_bf16(x[i]);
        std::memcpy(p, &h, 2);
        break;
      }
      case lh::DType::kFloat16: {
        const std::uint16_t h = to_fp16(x[i]);
        std::memcpy(p, &h, 2);
        break;
      }
      default:
        ADD_FAILURE() << "encode: unexpected dtype";
    }
  }
  return bytes;
}

std::vector<float> decode(const std::vector<unsigned char>& bytes, lh::DType dtype) {
  const std::size_t n = bytes.size() / lh::dtype_size(dtype);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char* p = bytes.data() + i * lh::dtype_size(dtype);
    switch (dtype) {
      case lh::DType::kFloat32:
        std::memcpy(&x[i], p, 4);
        break;
      case lh::DType::kFloat64: {
        double d;
        std::memcpy(&d, p, 8);
        x[i] = static_cast<float>(d);
        break;
      }
      case lh::DType::kBFloat16: {
        std::uint16_t h;
        std::memcpy(&h, p, 2);
        x[i] = from_bf16(h);
        break;
      }
      case lh::DType::kFloat16: {
        std::uint16_t h;
        std::memcpy(&h, p, 2);
        x[i] = from_fp16(h);
        break;
      }
      default:
        ADD_FAILURE() << "decode: unexpected dtype";
    }
  }
  return x;
}

// ---- running the library ------------------------------------------------------------------------

struct Inputs {
  Shape shape;
  std::vector<float> q, k, v, dout;
};

Inputs random_inputs(Shape s, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  Inputs in{s, {}, {}, {}, {}};
  for (auto* x : {&in.q, &in.k, &in.v, &in.dout}) {
    x->resize(s.numel());
    for (float& f : *x) f = normal(gen);
  }
  return in;
}

void round_inputs(Inputs& in, lh::DType dtype) {
  for (auto* x : {&in.q, &in.k, &in.v, &in.dout}) round_to(*x, dtype);
}

// A [B, N, H, D] tensor on `device`; with `strided`, a view of a [B, H, N, D] buffer.
struct Buffer {
  lh::Tensor storage;
  lh::TensorView view;
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

Buffer make_buffer(const Shape& s, lh::DType dtype, lh::Device device, bool strided) {
  Buffer buf;
  if (strided) {
    buf.storage = lh::Tensor::empty(dtype, device, {s.B, s.H, s.N, s.D});
    buf.view = buf.storage.view().transposed(1, 2);
  } else {
    buf.storage = lh::Tensor::empty(dtype, device, {s.B, s.N, s.H, s.D});
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
  if (buf.view.device == lh::Device::kCPU) {
    std::memcpy(buf.storage.data<void>(), bytes.data(), bytes.size());
  } else {
    lh::copy_from_host(lh::Device::kCUDA, buf.storage.data<void>(), bytes.data(), bytes.size());
  }
}

std::vector<float> download(const Buffer& buf, const Shape& s, bool strided) {
  std::vector<unsigned char> bytes(buf.storage.view().nbytes());
  if (buf.view.device == lh::Device::kCPU) {
    std::memcpy(bytes.data(), buf.storage.data<void>(), bytes.size());
  } else {
    lh::copy_to_host(lh::Device::kCUDA, bytes.data(), buf.storage.data<void>(), bytes.size());
  }
  const std::vector<float> ordered = decode(bytes, buf.view.dtype);
  if (!strided) return ordered;
  std::vector<float> x(ordered.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = ordered[bnhd_to_bhnd(s, i)];
  return x;
}

struct Outputs {
  std::vector<std::int32_t> indices;
  std::vector<float> out, dq, dk, dv;
  lh::StageTimes forward_times, backward_times;
};

struct RunFlags {
  bool backward = true;
  bool strided = false;         // q, k, v and out as [B, N, H, D] views of [B, H, N, D] buffers
  bool strided_grads = false;   // the same for dout, dq, dk and dv
  bool timed = false;           // fill the stage times
  bool deterministic = true;    // Options::deterministic
  bool context_buffer = false;  // the context in caller memory (ContextBuffer), not a Context
  bool out_in_q = false;        // out is q's buffer (attention written over q)
  bool dout_in_dq = false;      // dq is dout's buffer (the gradient written over dout)
  bool check_finite = false;    // Options::check_finite
};

Outputs run(const Inputs& in, lh::Device device, lh::DType dtype, const lh::Config& cfg,
            const RunFlags& flags = {}) {
  const Shape& s = in.shape;
  const bool st = flags.strided, sg = flags.strided_grads;
  Buffer q = make_buffer(s, dtype, device, st), k = make_buffer(s, dtype, device, st),
         v = make_buffer(s, dtype, device, st);
  const Buffer out = flags.out_in_q ? q : make_buffer(s, dtype, device, st);
  upload(q, s, in.q, st);
  upload(k, s, in.k, st);
  upload(v, s, in.v, st);
  Outputs result;
  lh::Options options;
  options.deterministic = flags.deterministic;
  options.check_finite = flags.check_finite;
  if (flags.timed) options.times = &result.forward_times;
  lh::Context ctx;
  // The ContextBuffer variant: device memory of context_bytes(), indices read at their offset.
  const lh::Plan plan = lh::make_plan(cfg, s.B, s.N, s.H, s.D);
  const lh::Tensor memory =
      flags.context_buffer
          ? lh::Tensor::empty(lh::DType::kInt32, device,
                              {static_cast<std::int64_t>((lh::context_bytes(plan, dtype) + 3) / 4)})
          : lh::Tensor();
  const lh::ContextBuffer buffer{memory.data<void>(), memory.view().nbytes()};
  if (flags.context_buffer) {
    lh::forward(cfg, q.view, k.view, v.view, out.view, buffer, options);
    result.indices.resize(static_cast<std::size_t>(plan.batch * plan.heads * plan.S));
    lh::synchronize(device);
    lh::copy_to_host(
        device, result.indices.data(),
        static_cast<const char*>(buffer.data) + lh::context_indices_offset(plan, dtype),
        result.indices.size() * sizeof(std::int32_t));
  } else {
    lh::forward(cfg, q.view, k.view, v.view, out.view, ctx, options);
    result.indices = ctx.indices();
  }
  result.out = download(out, s, st);
  if (flags.backward) {
    Buffer dout = make_buffer(s, dtype, device, sg), dk = make_buffer(s, dtype, device, sg),
           dv = make_buffer(s, dtype, device, sg);
    const Buffer dq = flags.dout_in_dq ? dout : make_buffer(s, dtype, device, sg);
    upload(dout, s, in.dout, sg);
    if (flags.timed) options.times = &result.backward_times;
    if (flags.context_buffer) {
      lh::backward(cfg, buffer, dout.view, dq.view, dk.view, dv.view, options);
    } else {
      lh::backward(ctx, dout.view, dq.view, dk.view, dv.view, options);
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
  return lh::backend_available(lh::Device::kCPU);
}

// ---- the spec's selection on the host, for sizes where CPU attention would be too slow --------

// ||x|| as both backends define it (core/scores.hpp), restated: float64 sums of 8
// consecutive squares in d order, added pairwise (neighbours first, zero-padded to a power of
// two), rounded once.
float token_norm(const float* x, std::int64_t d) {
  std::vector<double> chunk;
  for (std::int64_t c = 0; c < d; c += 8) {
    double sum = 0;
    for (std::int64_t i = c; i < std::min(d, c + 8); ++i) {
      sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    }
    chunk.push_back(sum);
  }
  while (chunk.size() & (chunk.size() - 1)) chunk.push_back(0.0);
  while (chunk.size() > 1) {
    std::vector<double> next;
    for (std::size_t i = 0; i < chunk.size(); i += 2) next.push_back(chunk[i] + chunk[i + 1]);
    chunk.swap(next);
  }
  const float norm = static_cast<float>(std::sqrt(chunk[0]));
  return std::isnan(norm) ? -INFINITY : norm;
}

// [B, H, S] indices per the spec: ties broken by candidate position.
std::vector<std::int32_t> host_indices(const Inputs& in, const lh::Plan& plan) {
  const Shape& s = in.shape;
  const int L = plan.config.levels, p = plan.config.pool;
  std::vector<std::int32_t> result;
  for (std::int64_t b = 0; b < s.B; ++b) {
    for (std::int64_t h = 0; h < s.H; ++h) {
      std::vector<std::vector<float>> sq(L), sk(L);
      sq[0].resize(s.N);
      sk[0].resize(s.N);
      for (std::int64_t t = 0; t < s.N; ++t) {
        const std::size_t at = static_cast<std::size_t>(((b * s.N + t) * s.H + h) * s.D);
        sq[0][t] = token_norm(&in.q[at], s.D);
        sk[0][t] = token_norm(&in.k[at], s.D);
      }
      for (int l = 1; l < L; ++l) {
        sq[l].resize(plan.size[l]);
        sk[l].resize(plan.size[l]);
        for (std::int64_t i = 0; i < plan.size[l]; ++i) {
          sq[l][i] = sq[l - 1][i * p];
          sk[l][i] = sk[l - 1][i * p];
          for (int c = 1; c < p; ++c) {
            sq[l][i] = std::max(sq[l][i], sq[l - 1][i * p + c]);
            sk[l][i] = std::max(sk[l][i], sk[l - 1][i * p + c]);
          }
        }
      }
      std::vector<std::pair<std::int64_t, std::int32_t>> keyed;  // (key * 2^(L-1), index)
      auto add = [&](int l, std::int64_t i, bool kept) {
        const std::int64_t c = plan.block[l];
        const std::int64_t key = kept
                                     ? ((c * (i + 1)) << (L - 1)) - (std::int64_t{1} << (L - 1 - l))
                                     : (c * i) << (L - 1);
        keyed.emplace_back(key, static_cast<std::int32_t>(plan.offset[l] + i));
      };
      const std::int64_t C = L == 1 ? s.N : plan.tile_entries;
      const std::int64_t tiles = L == 1 ? 1 : plan.tiles;
      for (std::int64_t tile = 0; tile < tiles; ++tile) {
        std::vector<std::int64_t> cand(C);
        std::iota(cand.begin(), cand.end(), tile * C);
        for (int l = L - 1; l >= 1; --l) {
          auto best = [&](const std::vector<float>& score, std::vector<std::int64_t> pos) {
            // pos: candidate positions; highest score first, ties to the lower position
            std::stable_sort(pos.begin(), pos.end(), [&](std::int64_t x, std::int64_t y) {
              return score[cand[x]] > score[cand[y]];
            });
            return pos;
          };
          std::vector<std::int64_t> all(cand.size());
          std::iota(all.begin(), all.end(), 0);
          const std::vector<std::int64_t> by_q = best(sq[l], all);
          std::vector<std::int64_t> rest(by_q.begin() + 64, by_q.end());
          std::sort(rest.begin(), rest.end());
          const std::vector<std::int64_t> by_k = best(sk[l], rest);
          std::vector<std::int64_t> parents;
          std::vector<char> kept(cand.size(), 0);
          for (int j = 0; j < 64; ++j) parents.push_back(cand[by_q[j]]), kept[by_q[j]] = 1;
          for (int j = 0; j < 64; ++j) parents.push_back(cand[by_k[j]]), kept[by_k[j]] = 1;
          for (std::size_t j = 0; j < cand.size(); ++j) add(l, cand[j], kept[j] != 0);
          cand.clear();
          for (std::size_t j = 0; j < parents.size() * p; ++j)
            cand.push_back(parents[j / p] * p + j % p);
        }
        for (std::int64_t i : cand) add(0, i, false);
      }
      std::sort(keyed.begin(), keyed.end());
      for (const auto& e : keyed) result.push_back(e.second);
    }
  }
  return result;
}

// ---- tests --------------------------------------------------------------------------------------

struct Case {
  Shape shape;
  int levels, pool, topk;
};

lh::Config config_of(const Case& c) {
  lh::Config cfg;
  cfg.levels = c.levels;
  cfg.pool = c.pool;
  cfg.topk = c.topk;
  return cfg;
}

std::string name_of(const Case& c) {
  std::ostringstream os;
  os << "B" << c.shape.B << "_N" << c.shape.N << "_H" << c.shape.H << "_D" << c.shape.D << "_L"
     << c.levels << "_p" << c.pool << "_K" << c.topk;
  return os.str();
}

const std::vector<Case>& fp32_cases() {
  static const std::vector<Case> cases = {
      {{2, 256, 2, 64}, 1, 2, 128},   // dense
      {{2, 1024, 3, 64}, 2, 2, 256},  // two tiles
      {{2, 4096, 2, 128}, 3, 4, 128},
      {{1, 4096, 2, 64}, 4, 2, 256},
      {{2, 2048, 2, 128}, 2, 8, 128},
      {{1, 8192, 2, 64}, 3, 8, 128},  // C == 128: every coarsest entry is kept
      // Pyramid kernel shapes: blocks of 256 tokens (longer than the 64 norms it stages), a head
      // dim of 2.5 chunks (4 lanes, the last chunk half full) and of half a chunk (1 lane).
      {{1, 32768, 2, 64}, 3, 16, 128},
      {{2, 2048, 3, 20}, 2, 4, 128},
      {{1, 1024, 3, 4}, 2, 2, 128},
      // Scatter: more levels than its direct kernel holds (the staged run kernel runs).
      {{1, 4096, 2, 64}, 5, 2, 128},
      // S = 1536 > N: the gathered gradients do not fit in dq, dk, dv (the workspace holds them).
      {{1, 1024, 2, 64}, 2, 2, 512},
  };
  return cases;
}

class CudaMatchesCpu : public ::testing::TestWithParam<Case> {};

// fp32 on both: identical indices, outputs and gradients to float32 rounding.
TEST_P(CudaMatchesCpu, IndicesOutputsAndGradients) {
  SKIP_WITHOUT_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend in this build";
  const Case& c = GetParam();
  const Inputs in = random_inputs(c.shape, 1234);
  const Outputs gpu = run(in, lh::Device::kCUDA, lh::DType::kFloat32, config_of(c));
  const Outputs cpu = run(in, lh::Device::kCPU, lh::DType::kFloat32, config_of(c));
  ASSERT_EQ(gpu.indices, cpu.indices)
      << "first difference " << first_difference(gpu.indices, cpu.indices);
  expect_close(gpu, cpu, 1e-5, name_of(c));
}

INSTANTIATE_TEST_SUITE_P(Configs, CudaMatchesCpu, ::testing::ValuesIn(fp32_cases()),
                         [](const auto& info) { return name_of(info.param); });

// Many equal scores: ranks are decided by the tie rule, which both backends must share.
TEST(CudaBackend, TiedScoresSelectLikeCpu) {
  SKIP_WITHOUT_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend in this build";
  const Case c{{2, 4096, 2, 64}, 3, 4, 128};
  for (int mode = 0; mode < 2; ++mode) {
    Inputs in = random_inputs(c.shape, 99);
    std::mt19937 gen(7 + mode);
    std::uniform_int_distribution<int> pick(-1, 1);
    for (auto* x : {&in.q, &in.k}) {
      // mode 0: entries in {-1, 0, 1} (few distinct norms); mode 1: +-1 (all norms equal)
      for (float& f : *x) f = mode == 0 ? static_cast<float>(pick(gen)) : (f < 0 ? -1.f : 1.f);
    }
    const Outputs gpu =
        run(in, lh::Device::kCUDA, lh::DType::kFloat32, config_of(c), {.backward = false});
    const Outputs cpu =
        run(in, lh::Device::kCPU, lh::DType::kFloat32, config_of(c), {.backward = false});
    EXPECT_EQ(gpu.indices, cpu.indices)
        << "mode " << mode << ", first difference " << first_difference(gpu.indices, cpu.indices);
    // The host restatement of the rule agrees as well.
    EXPECT_EQ(gpu.indices, host_indices(in, lh::make_plan(config_of(c), 2, 4096, 2, 64)))
        << "mode " << mode;
  }
}

// The original implementation's outputs (fp32 on an H200): indices exact, values to 1e-5.
// The cases come from the shared loader (tests/support/golden.hpp, tests/data/golden).
TEST(CudaGolden, MatchesOriginal) {
  SKIP_WITHOUT_GPU();
  const std::vector<std::filesystem::path> dirs = lhtest::golden_case_dirs();
  LHTEST_REQUIRE_GOLDEN(dirs);
  for (const std::filesystem::path& dir : dirs) {
    SCOPED_TRACE(dir.string());
    const lhtest::GoldenCase g = lhtest::load_golden(dir);
    const Inputs in{{g.shape.B, g.shape.N, g.shape.H, g.shape.D}, g.q, g.k, g.v, g.dout};
    const Outputs gpu = run(in, lh::Device::kCUDA, lh::DType::kFloat32, g.config);
    ASSERT_EQ(gpu.indices, g.indices)
        << "first difference " << first_difference(gpu.indices, g.indices);
    const double e_out = rel_l2(gpu.out, g.out), e_dq = rel_l2(gpu.dq, g.dq);
    const double e_dk = rel_l2(gpu.dk, g.dk), e_dv = rel_l2(gpu.dv, g.dv);
    std::printf("[ golden   ] %s cuda rel L2 out %.2e dq %.2e dk %.2e dv %.2e\n",
                dir.string().c_str(), e_out, e_dq, e_dk, e_dv);
    EXPECT_LT(e_out, 1e-5);
    EXPECT_LT(e_dq, 1e-5);
    EXPECT_LT(e_dk, 1e-5);
    EXPECT_LT(e_dv, 1e-5);
  }
}

struct HalfCase {
  lh::DType dtype;
  std::int64_t head_dim;
};

class CudaHalfPrecision : public ::testing::TestWithParam<HalfCase> {};

// bf16/fp16 through cuDNN: within 1e-2 (relative L2) of a high-precision reference on the same
// rounded inputs. The float64 CPU path ranks from float64 norms, so on a near-tie it may select
// differently from the float32-scored GPU; then the float32 CPU path (same scores, same
// selection, error ~1e-6) is the reference.
TEST_P(CudaHalfPrecision, CloseToReference) {
  SKIP_WITHOUT_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend in this build";
  const HalfCase hc = GetParam();
  const Case c{{1, 4096, 2, hc.head_dim}, 3, 4, 128};
  Inputs in = random_inputs(c.shape, 4321);
  round_inputs(in, hc.dtype);
  const Outputs gpu = run(in, lh::Device::kCUDA, hc.dtype, config_of(c));
  const Outputs cpu32 = run(in, lh::Device::kCPU, lh::DType::kFloat32, config_of(c));
  ASSERT_EQ(gpu.indices, cpu32.indices)
      << "first difference " << first_difference(gpu.indices, cpu32.indices);
  const Outputs cpu64 = run(in, lh::Device::kCPU, lh::DType::kFloat64, config_of(c));
  const bool same_selection = cpu64.indices == gpu.indices;
  if (!same_selection) std::printf("float64 CPU selected differently (near-tie); using float32\n");
  expect_close(gpu, same_selection ? cpu64 : cpu32, 1e-2, lh::dtype_name(hc.dtype));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaHalfPrecision,
                         ::testing::Values(HalfCase{lh::DType::kBFloat16, 64},
                                           HalfCase{lh::DType::kBFloat16, 128},
                                           HalfCase{lh::DType::kFloat16, 64},
                                           HalfCase{lh::DType::kFloat16, 128}),
                         [](const auto& info) {
                           return std::string(lh::dtype_name(info.param.dtype)) + "_D" +
                                  std::to_string(info.param.head_dim);
                         });

class CudaCausality : public ::testing::TestWithParam<lh::DType> {};

// Changing v_t, or q_t/k_t without changing their norms, leaves every output before t
// bitwise unchanged.
TEST_P(CudaCausality, EarlierOutputsUnchanged) {
  SKIP_WITHOUT_GPU();
  const lh::DType dtype = GetParam();
  const Case c{{1, 4096, 2, 64}, 3, 4, 128};
  const Shape& s = c.shape;
  Inputs in = random_inputs(s, 555);
  round_inputs(in, dtype);
  const Outputs base = run(in, lh::Device::kCUDA, dtype, config_of(c), {.backward = false});
  const std::int64_t t0 = 2500;
  const std::size_t prefix = static_cast<std::size_t>(t0 * s.H * s.D);  // tokens < t0, B == 1

  Inputs changed_v = in;
  for (std::int64_t i = 0; i < s.H * s.D; ++i) changed_v.v[prefix + i] += 1.0f;
  round_inputs(changed_v, dtype);
  const Outputs after_v =
      run(changed_v, lh::Device::kCUDA, dtype, config_of(c), {.backward = false});
  EXPECT_EQ(after_v.indices, base.indices);
  EXPECT_EQ(0, std::memcmp(after_v.out.data(), base.out.data(), prefix * sizeof(float)))
      << "changing v at token " << t0 << " changed an earlier output";
  EXPECT_FALSE(bits_equal(after_v.out, base.out)) << "the change reached no output at all";

  Inputs flipped = in;
  for (std::int64_t h = 0; h < s.H; ++h) {
    flipped.q[prefix + h * s.D + 3] = -flipped.q[prefix + h * s.D + 3];
    flipped.k[prefix + h * s.D + 5] = -flipped.k[prefix + h * s.D + 5];
  }
  const Outputs after_qk =
      run(flipped, lh::Device::kCUDA, dtype, config_of(c), {.backward = false});
  EXPECT_EQ(after_qk.indices, base.indices) << "norms are unchanged, so is the selection";
  EXPECT_EQ(0, std::memcmp(after_qk.out.data(), base.out.data(), prefix * sizeof(float)))
      << "flipping a sign in q/k at token " << t0 << " changed an earlier output";
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaCausality,
                         ::testing::Values(lh::DType::kBFloat16, lh::DType::kFloat32),
                         [](const auto& info) { return std::string(lh::dtype_name(info.param)); });

// Two runs give the same bits; stage times are filled when asked for.
TEST(CudaBackend, DeterministicAndTimed) {
  SKIP_WITHOUT_GPU();
  const Case c{{2, 8192, 2, 128}, 3, 4, 256};
  const Inputs in = random_inputs(c.shape, 77);
  const Outputs a = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c), {.timed = true});
  const Outputs b = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c));
  EXPECT_EQ(a.indices, b.indices);
  EXPECT_TRUE(bits_equal(a.out, b.out));
  EXPECT_TRUE(bits_equal(a.dq, b.dq));
  EXPECT_TRUE(bits_equal(a.dk, b.dk));
  EXPECT_TRUE(bits_equal(a.dv, b.dv));
  for (double t : {a.forward_times.pyramid, a.forward_times.selection, a.forward_times.gather,
                   a.forward_times.attention, a.forward_times.scatter, a.backward_times.scatter,
                   a.backward_times.attention, a.backward_times.gather}) {
    EXPECT_GT(t, 0.0);
  }
  EXPECT_EQ(a.backward_times.pyramid, 0.0);
  EXPECT_EQ(a.backward_times.selection, 0.0);
}

// Options::check_finite on device tensors: a NaN or Inf in q, k, v (forward) or dout (backward)
// is refused with InvalidArgument naming the tensor and counting the values; finite inputs give
// the bits of an unchecked run.
TEST(CudaBackend, CheckFiniteOnDeviceTensors) {
  SKIP_WITHOUT_GPU();
  const Case c{{1, 4096, 2, 64}, 2, 4, 128};
  const Inputs in = random_inputs(c.shape, 79);
  const Outputs plain = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c));
  const Outputs checked =
      run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c), {.check_finite = true});
  EXPECT_EQ(checked.indices, plain.indices);
  EXPECT_TRUE(bits_equal(checked.out, plain.out));
  EXPECT_TRUE(bits_equal(checked.dq, plain.dq));
  const auto expect_refused = [&](Inputs bad, const std::string& tensor) {
    try {
      run(bad, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c), {.check_finite = true});
      ADD_FAILURE() << "a non-finite " << tensor << " was accepted";
    } catch (const lh::InvalidArgument& e) {
      EXPECT_EQ(e.param(), tensor);
      EXPECT_NE(std::string(e.what()).find("2 NaN/Inf values"), std::string::npos) << e.what();
    }
  };
  const std::size_t late = in.q.size() - 5;  // near the end: the whole tensor is read
  for (const char* name : {"q", "k", "v", "dout"}) {
    Inputs bad = in;
    std::vector<float>& x = name[0] == 'q'   ? bad.q
                            : name[0] == 'k' ? bad.k
                            : name[0] == 'v' ? bad.v
                                             : bad.dout;
    x[7] = std::numeric_limits<float>::quiet_NaN();
    x[late] = -std::numeric_limits<float>::infinity();
    expect_refused(bad, name);
  }
}

// Options::deterministic = false: cuDNN's fast backward. The forward is the same bits; the
// gradients are the same sums in another order (bf16 storage: within a few units of the last
// place), for Lighthouse and for dense attention.
TEST(CudaBackend, FastBackwardCloseToDeterministic) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : {Case{{2, 8192, 2, 128}, 3, 4, 256}, Case{{1, 4096, 2, 128}, 1, 4, 128}}) {
    const Inputs in = random_inputs(c.shape, 78);
    const Outputs exact = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c));
    const Outputs fast =
        run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c), {.deterministic = false});
    EXPECT_EQ(fast.indices, exact.indices) << name_of(c);
    EXPECT_TRUE(bits_equal(fast.out, exact.out)) << name_of(c);
    EXPECT_LT(rel_l2(fast.dq, exact.dq), 1e-2) << name_of(c);
    EXPECT_LT(rel_l2(fast.dk, exact.dk), 1e-2) << name_of(c);
    EXPECT_LT(rel_l2(fast.dv, exact.dv), 1e-2) << name_of(c);
  }
}

// The backward keeps the gathered gradients in the caller's dq, dk and dv where they fit (two
// blocks in dk, or one per tensor) and in the workspace otherwise (strided gradients, S > N, dout
// sharing memory with dq); the forward keeps its scratch in `out` unless out is q. Every layout
// gives the bits of every other. The cases cover the three backward layouts (checked against the
// host's choice, so a change of the rule cannot silently skip one).
TEST(CudaBackend, ScratchInCallerBuffersGivesTheSameBits) {
  SKIP_WITHOUT_GPU();
  struct LayoutCase {
    Case c;
    lh::cuda::GradientScratch expected;
  };
  const LayoutCase cases[] = {
      {{{2, 4096, 3, 64}, 3, 4, 128}, lh::cuda::GradientScratch::kTwoBlocks},  // S = 1280
      {{{2, 2048, 2, 128}, 2, 8, 128}, lh::cuda::GradientScratch::kOneBlock},  // S = 1280
      {{{1, 1024, 2, 64}, 2, 2, 512}, lh::cuda::GradientScratch::kWorkspace},  // S = 1536
  };
  for (const LayoutCase& lc : cases) {
    const Case& c = lc.c;
    const Shape& s = c.shape;
    const lh::Plan plan = lh::make_plan(config_of(c), s.B, s.N, s.H, s.D);
    const std::size_t block = static_cast<std::size_t>(s.B * s.H * plan.S * s.D) * 2;
    // Contiguous, disjoint bf16 gradients at made-up addresses: the rule only reads sizes.
    auto fake = [&](std::uintptr_t slot) {
      return lh::TensorView::contiguous(reinterpret_cast<void*>((slot + 1) << 36),
                                        lh::DType::kBFloat16, lh::Device::kCUDA,
                                        {s.B, s.N, s.H, s.D});
    };
    ASSERT_EQ(lh::cuda::choose_gradient_scratch(fake(0), fake(1), fake(2), fake(3), {}, block),
              lc.expected)
        << name_of(c);
    for (lh::DType dtype : {lh::DType::kBFloat16, lh::DType::kFloat32}) {
      const std::string what = name_of(c) + " " + lh::dtype_name(dtype) + " (" +
                               lh::cuda::gradient_scratch_name(lc.expected) + ")";
      const Inputs in = random_inputs(s, 61);
      const Outputs plain = run(in, lh::Device::kCUDA, dtype, config_of(c));
      for (const RunFlags& flags : {RunFlags{.strided_grads = true}, RunFlags{.out_in_q = true},
                                    RunFlags{.dout_in_dq = true}}) {
        const std::string variant =
            what + (flags.strided_grads ? ", strided gradients (workspace)" : "") +
            (flags.out_in_q ? ", out in q (forward scratch in the workspace)" : "") +
            (flags.dout_in_dq ? ", dout in dq (workspace)" : "");
        const Outputs other = run(in, lh::Device::kCUDA, dtype, config_of(c), flags);
        EXPECT_EQ(other.indices, plain.indices) << variant;
        EXPECT_TRUE(bits_equal(other.out, plain.out)) << variant << ": out";
        EXPECT_TRUE(bits_equal(other.dq, plain.dq)) << variant << ": dq";
        EXPECT_TRUE(bits_equal(other.dk, plain.dk)) << variant << ": dk";
        EXPECT_TRUE(bits_equal(other.dv, plain.dv)) << variant << ": dv";
      }
      if (dtype == lh::DType::kFloat32) {
        // fp32 attention does not use cuDNN: with its workspace freed, two blocks in dk stage
        // dv_sel in the workspace instead of cuDNN's (after the bf16 runs above, large enough).
        lh::cuda::cudnn_release_workspace();
        ASSERT_EQ(lh::cuda::cudnn_workspace_bytes(), 0u);
        const Outputs unborrowed = run(in, lh::Device::kCUDA, dtype, config_of(c));
        EXPECT_TRUE(bits_equal(unborrowed.dq, plain.dq) && bits_equal(unborrowed.dk, plain.dk) &&
                    bits_equal(unborrowed.dv, plain.dv))
            << what << ": without cuDNN's workspace";
      }
    }
  }
}

// [B, N, H, D] views of [B, H, N, D] buffers give the same bits as contiguous tensors.
TEST(CudaBackend, StridedViewsMatchContiguous) {
  SKIP_WITHOUT_GPU();
  const Case c{{2, 4096, 3, 64}, 3, 4, 128};
  const Inputs in = random_inputs(c.shape, 31);
  const Outputs plain = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c));
  const Outputs strided = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c),
                              {.strided = true, .strided_grads = true});
  EXPECT_EQ(plain.indices, strided.indices);
  EXPECT_TRUE(bits_equal(plain.out, strided.out));
  EXPECT_TRUE(bits_equal(plain.dq, strided.dq));
  EXPECT_TRUE(bits_equal(plain.dk, strided.dk));
  EXPECT_TRUE(bits_equal(plain.dv, strided.dv));
}

// Dense attention (levels == 1) runs on the caller's views, whatever their strides: q, k, v,
// out and the gradients in either layout give the results of contiguous tensors (the same bits
// in fp32, whose kernels sum in a fixed order whatever the strides), the indices are the tokens
// in order, and a second run gives the same bits.
TEST(CudaBackend, DenseRunsOnCallerViews) {
  SKIP_WITHOUT_GPU();
  const Case c{{2, 1024, 3, 64}, 1, 2, 128};
  const Inputs in = random_inputs(c.shape, 41);
  std::vector<std::int32_t> tokens;
  for (std::int64_t bh = 0; bh < c.shape.B * c.shape.H; ++bh) {
    for (std::int64_t t = 0; t < c.shape.N; ++t) tokens.push_back(static_cast<std::int32_t>(t));
  }
  for (lh::DType dtype : {lh::DType::kFloat32, lh::DType::kBFloat16}) {
    const std::string name = lh::dtype_name(dtype);
    const Outputs plain = run(in, lh::Device::kCUDA, dtype, config_of(c));
    EXPECT_EQ(plain.indices, tokens) << name;
    const Outputs again = run(in, lh::Device::kCUDA, dtype, config_of(c));
    EXPECT_TRUE(bits_equal(plain.out, again.out) && bits_equal(plain.dq, again.dq) &&
                bits_equal(plain.dk, again.dk) && bits_equal(plain.dv, again.dv))
        << name << ": two runs differ";
    for (const RunFlags& flags : {RunFlags{.strided = true}, RunFlags{.strided_grads = true},
                                  RunFlags{.strided = true, .strided_grads = true}}) {
      const std::string what = name + (flags.strided ? " strided inputs" : "") +
                               (flags.strided_grads ? " strided gradients" : "");
      const Outputs other = run(in, lh::Device::kCUDA, dtype, config_of(c), flags);
      if (dtype == lh::DType::kFloat32) {
        EXPECT_TRUE(bits_equal(other.out, plain.out)) << what;
        EXPECT_TRUE(bits_equal(other.dq, plain.dq)) << what;
        EXPECT_TRUE(bits_equal(other.dk, plain.dk)) << what;
        EXPECT_TRUE(bits_equal(other.dv, plain.dv)) << what;
      } else {
        expect_close(other, plain, 1e-2, what);
      }
    }
  }
}

// The context in caller memory (what the PyTorch op uses): the same bits as an owned context
// for Lighthouse; for dense attention (levels == 1) the general path with copies, against the
// owned context's cuDNN-on-views path.
TEST(CudaBackend, ContextBufferMatchesOwnedContext) {
  SKIP_WITHOUT_GPU();
  for (const Case& c : {Case{{2, 4096, 3, 64}, 3, 4, 128}, Case{{1, 2048, 2, 128}, 2, 2, 256},
                        Case{{2, 1024, 2, 64}, 1, 2, 128}}) {
    const Inputs in = random_inputs(c.shape, 51);
    for (lh::DType dtype : {lh::DType::kFloat32, lh::DType::kBFloat16}) {
      const std::string what = name_of(c) + " " + lh::dtype_name(dtype);
      const Outputs owned = run(in, lh::Device::kCUDA, dtype, config_of(c));
      const Outputs external = run(in, lh::Device::kCUDA, dtype, config_of(c),
                                   {.strided = true, .context_buffer = true});
      EXPECT_EQ(external.indices, owned.indices) << what;
      if (c.levels > 1) {
        EXPECT_TRUE(bits_equal(external.out, owned.out)) << what;
        EXPECT_TRUE(bits_equal(external.dq, owned.dq)) << what;
        EXPECT_TRUE(bits_equal(external.dk, owned.dk)) << what;
        EXPECT_TRUE(bits_equal(external.dv, owned.dv)) << what;
      } else {
        expect_close(external, owned, dtype == lh::DType::kFloat32 ? 1e-5 : 1e-2, what);
      }
    }
  }
}

// S >= 65536 (grid dimensions, 64-bit offsets, a 65536-entry tile): indices against the host
// restatement of the rule, sampled outputs against a float64 host computation, finite
// gradients.
TEST(CudaBackend, LongSequence) {
  SKIP_WITHOUT_GPU();
  const Case c{{1, 131072, 2, 64}, 2, 2, 128};
  const Shape& s = c.shape;
  const lh::Plan plan = lh::make_plan(config_of(c), s.B, s.N, s.H, s.D);
  ASSERT_GE(plan.S, 65536);
  Inputs in = random_inputs(s, 2024);
  round_inputs(in, lh::DType::kBFloat16);
  const Outputs gpu = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c));
  const std::vector<std::int32_t> want = host_indices(in, plan);
  ASSERT_EQ(gpu.indices, want) << "first difference " << first_difference(gpu.indices, want);

  const std::int64_t S = plan.S, D = s.D;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<double> sampled_got, sampled_want;
  for (std::int64_t h = 0; h < s.H; ++h) {
    const std::int32_t* idx = want.data() + h * S;
    std::vector<std::int32_t> position(plan.pyramid_size, -1);
    for (std::int64_t i = 0; i < S; ++i) position[idx[i]] = static_cast<std::int32_t>(i);
    // Gathered rows in float64: means of each entry's tokens.
    auto row = [&](const std::vector<float>& x, std::int32_t index, std::vector<double>& dst) {
      int l = plan.config.levels - 1;
      while (index < plan.offset[l]) --l;
      const std::int64_t i = index - plan.offset[l], c_l = plan.block[l];
      dst.assign(D, 0.0);
      for (std::int64_t t = i * c_l; t < (i + 1) * c_l; ++t) {
        for (std::int64_t d = 0; d < D; ++d) dst[d] += x[(t * s.H + h) * D + d];
      }
      for (double& v : dst) v /= static_cast<double>(c_l);
    };
    std::vector<double> keys(S * D), values(S * D), r;  // gathered k and v of this head
    for (std::int64_t j = 0; j < S; ++j) {
      row(in.k, idx[j], r);
      std::copy(r.begin(), r.end(), keys.begin() + j * D);
      row(in.v, idx[j], r);
      std::copy(r.begin(), r.end(), values.begin() + j * D);
    }
    auto attend = [&](std::int64_t srow) {  // output of gathered row srow
      std::vector<double> qr, o(D, 0.0), logits(srow + 1);
      row(in.q, idx[srow], qr);
      double m = -1e300;
      for (std::int64_t j = 0; j <= srow; ++j) {
        double dot = 0;
        for (std::int64_t d = 0; d < D; ++d) dot += qr[d] * keys[j * D + d];
        logits[j] = dot * scale;
        m = std::max(m, logits[j]);
      }
      double z = 0;
      for (std::int64_t j = 0; j <= srow; ++j) {
        const double w = std::exp(logits[j] - m);
        z += w;
        for (std::int64_t d = 0; d < D; ++d) o[d] += w * values[j * D + d];
      }
      for (double& v : o) v /= z;
      return o;
    };
    for (std::int64_t t :
         {std::int64_t{0}, std::int64_t{1}, std::int64_t{777}, s.N / 2 + 1, s.N - 2, s.N - 1}) {
      std::vector<double> expect(D, 0.0);
      for (int l = 0; l < plan.config.levels; ++l) {
        const std::int64_t i = (t + 1) / plan.block[l] - 1;
        if (i < 0 || position[plan.offset[l] + i] < 0) continue;
        const std::vector<double> o = attend(position[plan.offset[l] + i]);
        for (std::int64_t d = 0; d < D; ++d) expect[d] += o[d];
      }
      for (std::int64_t d = 0; d < D; ++d) {
        sampled_want.push_back(expect[d]);
        sampled_got.push_back(gpu.out[(t * s.H + h) * D + d]);
      }
    }
  }
  double num = 0, den = 0;
  for (std::size_t i = 0; i < sampled_got.size(); ++i) {
    num += (sampled_got[i] - sampled_want[i]) * (sampled_got[i] - sampled_want[i]);
    den += sampled_want[i] * sampled_want[i];
  }
  EXPECT_LT(std::sqrt(num / den), 2e-2);
  for (const auto* g : {&gpu.dq, &gpu.dk, &gpu.dv}) {
    EXPECT_TRUE(std::all_of(g->begin(), g->end(), [](float f) { return std::isfinite(f); }));
  }
}

// What the kernels cannot run is refused up front, naming the parameter.
TEST(CudaBackend, RejectsUnsupported) {
  SKIP_WITHOUT_GPU();
  const lh::Device gpu = lh::Device::kCUDA;
  lh::Config cfg;
  cfg.levels = 3;
  cfg.pool = 4;
  cfg.topk = 128;
  const lh::Plan plan = lh::make_plan(cfg, 1, 8192, 2, 136);
  try {
    lh::check_supported(gpu, plan, lh::DType::kBFloat16);
    ADD_FAILURE() << "head_dim 136 in bf16 accepted";
  } catch (const lh::InvalidArgument& e) {
    EXPECT_EQ(e.param(), "head_dim");
  }
  const lh::Plan plan64 = lh::make_plan(cfg, 1, 8192, 2, 64);
  EXPECT_NO_THROW(lh::check_supported(gpu, plan64, lh::DType::kBFloat16));
  EXPECT_NO_THROW(lh::check_supported(gpu, plan64, lh::DType::kFloat32));
  try {
    lh::check_supported(gpu, plan64, lh::DType::kFloat64);
    ADD_FAILURE() << "float64 accepted";
  } catch (const lh::InvalidArgument& e) {
    EXPECT_EQ(e.param(), "dtype");
  }
  lh::Config wide;
  wide.levels = 2;
  wide.pool = 128;
  wide.topk = 128;
  try {
    lh::check_supported(gpu, lh::make_plan(wide, 1, 16384, 1, 64), lh::DType::kBFloat16);
    ADD_FAILURE() << "pool 128 accepted";
  } catch (const lh::InvalidArgument& e) {
    EXPECT_EQ(e.param(), "pool");
  }
}

// ---- selection = causal (docs/SPEC-causal.md)
// ----------------------------------------------------

lh::Config causal_of(const Case& c) {
  lh::Config cfg = config_of(c);
  cfg.selection = lh::Selection::kCausal;
  return cfg;
}

// Candidate lists of every size class the kernel handles differently: small ones, a coarsest
// level of 2048 (staged keys), of 12288 (beyond the 8192 staged keys: read from L2) and of 32768
// (two rounds of 16384 eligibility bits), p = 2..16, 2..4 levels, several tiles, B, H > 1.
const std::vector<Case>& causal_cases() {
  static const std::vector<Case> cases = {
      {{2, 1024, 3, 64}, 2, 2, 256},  {{2, 4096, 2, 128}, 3, 4, 128},
      {{1, 4096, 2, 64}, 4, 2, 256},  {{2, 2048, 2, 128}, 2, 8, 128},
      {{1, 8192, 2, 64}, 3, 8, 128},  {{1, 32768, 2, 64}, 3, 16, 128},
      {{2, 2048, 3, 20}, 2, 4, 128},  {{1, 16384, 1, 32}, 2, 8, 128},
      {{1, 24576, 1, 16}, 2, 2, 128}, {{1, 65536, 1, 8}, 2, 2, 128},
  };
  return cases;
}

class CudaCausalSelection : public ::testing::TestWithParam<Case> {};

// fp32: the same indices as the CPU backend (comparisons only, on scores both compute alike),
// outputs and gradients to float32 rounding; bf16 inputs select as the CPU does on the same
// rounded values.
TEST_P(CudaCausalSelection, MatchesCpu) {
  SKIP_WITHOUT_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend in this build";
  const Case& c = GetParam();
  const bool big = c.shape.N >= 16384;  // the CPU attention would dominate: indices only
  const Inputs in = random_inputs(c.shape, 2024);
  const Outputs gpu =
      run(in, lh::Device::kCUDA, lh::DType::kFloat32, causal_of(c), {.backward = !big});
  const Outputs cpu =
      run(in, lh::Device::kCPU, lh::DType::kFloat32, causal_of(c), {.backward = !big});
  ASSERT_EQ(gpu.indices, cpu.indices)
      << "first difference " << first_difference(gpu.indices, cpu.indices);
  if (!big) expect_close(gpu, cpu, 1e-5, name_of(c));
  // The rule really differs from the original's (the comparison above is not vacuous).
  const Outputs orig =
      run(in, lh::Device::kCUDA, lh::DType::kFloat32, config_of(c), {.backward = false});
  EXPECT_NE(orig.indices, gpu.indices);

  Inputs rounded = in;
  round_inputs(rounded, lh::DType::kBFloat16);
  const Outputs gpu16 =
      run(rounded, lh::Device::kCUDA, lh::DType::kBFloat16, causal_of(c), {.backward = false});
  const Outputs cpu32 =
      run(rounded, lh::Device::kCPU, lh::DType::kFloat32, causal_of(c), {.backward = false});
  EXPECT_EQ(gpu16.indices, cpu32.indices)
      << "bf16, first difference " << first_difference(gpu16.indices, cpu32.indices);
}

INSTANTIATE_TEST_SUITE_P(Configs, CudaCausalSelection, ::testing::ValuesIn(causal_cases()),
                         [](const auto& info) { return name_of(info.param); });

// Equal scores everywhere (eligibility is a strict comparison, so the forced tail decides) and
// few distinct ones.
TEST(CudaCausalSelection, TiedScoresSelectLikeCpu) {
  SKIP_WITHOUT_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend in this build";
  const Case c{{2, 4096, 2, 64}, 3, 4, 128};
  for (int mode = 0; mode < 2; ++mode) {
    Inputs in = random_inputs(c.shape, 98);
    std::mt19937 gen(17 + mode);
    std::uniform_int_distribution<int> pick(-1, 1);
    for (auto* x : {&in.q, &in.k}) {
      for (float& f : *x) f = mode == 0 ? static_cast<float>(pick(gen)) : (f < 0 ? -1.f : 1.f);
    }
    const Outputs gpu =
        run(in, lh::Device::kCUDA, lh::DType::kFloat32, causal_of(c), {.backward = false});
    const Outputs cpu =
        run(in, lh::Device::kCPU, lh::DType::kFloat32, causal_of(c), {.backward = false});
    EXPECT_EQ(gpu.indices, cpu.indices)
        << "mode " << mode << ", first difference " << first_difference(gpu.indices, cpu.indices);
  }
}

// Strict causality on the GPU (issue 11): q, k and v after t redrawn with norms over six orders
// of magnitude leave the outputs at positions <= t and, with dout zero after t, all of dq, dk,
// dv bitwise unchanged under selection = causal; the same check catches the original selection.
struct LeakCase {
  lh::DType dtype;
  lh::Selection selection;
};

class CudaStrictCausality : public ::testing::TestWithParam<LeakCase> {};

TEST_P(CudaStrictCausality, FutureChanges) {
  SKIP_WITHOUT_GPU();
  const LeakCase lc = GetParam();
  const Case c{{2, 4096, 2, 64}, 3, 4, 128};
  const Shape& s = c.shape;
  lh::Config cfg = config_of(c);
  cfg.selection = lc.selection;
  const Inputs in = random_inputs(s, 31);
  auto row = [&](std::int64_t b, std::int64_t n) {
    return static_cast<std::size_t>((b * s.N + n) * s.H * s.D);
  };
  int broken = 0;
  std::string first;
  std::mt19937 gen(5);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (std::int64_t t : {0, 3, 15, 16, 17, 255, 256, 1000, 2047, 2048, 3071, 4000, 4094}) {
    Inputs base = in;
    for (std::int64_t b = 0; b < s.B; ++b) {
      std::fill(base.dout.begin() + row(b, t + 1), base.dout.begin() + row(b, s.N), 0.f);
    }
    round_inputs(base, lc.dtype);
    Inputs other = base;
    for (std::int64_t b = 0; b < s.B; ++b) {
      for (std::int64_t n = t + 1; n < s.N; ++n) {
        for (std::int64_t h = 0; h < s.H; ++h) {
          const float gq = std::exp(3.f * normal(gen)), gk = std::exp(3.f * normal(gen));
          for (std::int64_t d = 0; d < s.D; ++d) {
            const std::size_t i = row(b, n) + static_cast<std::size_t>(h * s.D + d);
            other.q[i] = gq * normal(gen);
            other.k[i] = gk * normal(gen);
            other.v[i] = 3.f * normal(gen);
          }
        }
      }
    }
    round_inputs(other, lc.dtype);
    const Outputs before = run(base, lh::Device::kCUDA, lc.dtype, cfg);
    const Outputs after = run(other, lh::Device::kCUDA, lc.dtype, cfg);
    std::string why;
    for (std::int64_t b = 0; b < s.B && why.empty(); ++b) {
      if (std::memcmp(before.out.data() + row(b, 0), after.out.data() + row(b, 0),
                      (row(b, t + 1) - row(b, 0)) * sizeof(float)) != 0) {
        why = "an output at a position <= t changed";
      }
    }
    if (why.empty() && !bits_equal(before.dq, after.dq)) why = "dq changed";
    if (why.empty() && !bits_equal(before.dk, after.dk)) why = "dk changed";
    if (why.empty() && !bits_equal(before.dv, after.dv)) why = "dv changed";
    if (!why.empty() && broken++ == 0) first = "t = " + std::to_string(t) + ": " + why;
  }
  if (lc.selection == lh::Selection::kCausal) {
    EXPECT_EQ(broken, 0) << "selection = causal leaked; first: " << first;
  } else {
    std::printf(
        "[ leaks    ] original selection on the GPU broke causality at %d of 13 positions\n",
        broken);
    EXPECT_GT(broken, 0) << "the check did not catch the original selection's leak";
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, CudaStrictCausality,
                         ::testing::Values(LeakCase{lh::DType::kBFloat16, lh::Selection::kCausal},
                                           LeakCase{lh::DType::kFloat32, lh::Selection::kCausal},
                                           LeakCase{lh::DType::kBFloat16,
                                                    lh::Selection::kOriginal}),
                         [](const auto& info) {
                           return std::string(lh::dtype_name(info.param.dtype)) + "_" +
                                  lh::selection_name(info.param.selection);
                         });

}  // namespace
