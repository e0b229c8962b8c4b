// The modes of issue 14 on the GPU, against the CPU backend and the golden cases: the dilated
// scorer (CPU agreement, layouts that need a copy; golden d1 runs in CudaGolden), grouped-query
// attention (CPU agreement in fp32 and bf16, the expanded multi-head run, strided inputs). Every
// test skips when no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "lighthouse/device.hpp"
#include "lighthouse/lighthouse.hpp"
#include "lighthouse/npy.hpp"
#include "support/require_gpu.hpp"

namespace lh = lighthouse;

namespace {

// ---- problems and runs ----------------------------------------------------------------------

// [B, N, H, D] queries and output, [B, N, Hkv, D] keys and values (Hkv = H unless GQA).
struct Problem {
  std::int64_t B = 1, N = 1, H = 1, Hkv = 1, D = 8;
  std::vector<float> q, k, v, dout;
  std::size_t q_numel() const { return static_cast<std::size_t>(B * N * H * D); }
  std::size_t kv_numel() const { return static_cast<std::size_t>(B * N * Hkv * D); }
};

std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float from_bf16(std::uint16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// q and k with varied row norms (clear winners for the selection), normal v and dout; values
// rounded to `dtype` so that every backend sees the same numbers.
Problem random_problem(std::int64_t B, std::int64_t N, std::int64_t H, std::int64_t Hkv,
                       std::int64_t D, std::uint32_t seed, lh::DType dtype = lh::DType::kFloat32) {
  Problem p{B, N, H, Hkv, D, {}, {}, {}, {}};
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  auto fill = [&](std::vector<float>& x, std::size_t n, bool spread) {
    x.resize(n);
    for (std::size_t row = 0; row < n / D; ++row) {
      const float gain = spread ? std::exp(0.5f * normal(gen)) : 1.f;
      for (std::int64_t d = 0; d < D; ++d) {
        float f = gain * normal(gen);
        if (dtype == lh::DType::kBFloat16) f = from_bf16(to_bf16(f));
        x[row * D + d] = f;
      }
    }
  };
  fill(p.q, p.q_numel(), true);
  fill(p.k, p.kv_numel(), true);
  fill(p.v, p.kv_numel(), false);
  fill(p.dout, p.q_numel(), false);
  return p;
}

// A [B, N, heads, D] tensor on `device` holding `x` (encoded in dtype); with `strided`, a view
// of a [B, heads, N, D] buffer (heads not packed inside a token).
struct Buffer {
  lh::Tensor storage;
  lh::TensorView view;
  bool strided = false;
};

std::vector<unsigned char> encode(const std::vector<float>& x, lh::DType dtype) {
  std::vector<unsigned char> bytes(x.size() * lh::dtype_size(dtype));
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (dtype == lh::DType::kBFloat16) {
      const std::uint16_t h = to_bf16(x[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    } else {
      std::memcpy(bytes.data() + 4 * i, &x[i], 4);
    }
  }
  return bytes;
}

std::vector<float> decode(const std::vector<unsigned char>& bytes, lh::DType dtype) {
  std::vector<float> x(bytes.size() / lh::dtype_size(dtype));
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (dtype == lh::DType::kBFloat16) {
      std::uint16_t h;
      std::memcpy(&h, bytes.data() + 2 * i, 2);
      x[i] = from_bf16(h);
    } else {
      std::memcpy(&x[i], bytes.data() + 4 * i, 4);
    }
  }
  return x;
}

// Index of element (b, n, h, d) of a [B, N, H, D] tensor in [B, H, N, D] storage.
std::size_t bhnd_index(std::int64_t N, std::int64_t H, std::int64_t D, std::size_t i) {
  const std::int64_t d = static_cast<std::int64_t>(i) % D;
  std::int64_t r = static_cast<std::int64_t>(i) / D;
  const std::int64_t h = r % H;
  r /= H;
  const std::int64_t n = r % N;
  const std::int64_t b = r / N;
  return static_cast<std::size_t>(((b * H + h) * N + n) * D + d);
}

Buffer make_buffer(std::int64_t B, std::int64_t N, std::int64_t heads, std::int64_t D,
                   lh::DType dtype, lh::Device device, bool strided) {
  Buffer buf;
  buf.strided = strided;
  if (strided) {
    buf.storage = lh::Tensor::empty(dtype, device, {B, heads, N, D});
    buf.view = buf.storage.view().transposed(1, 2);
  } else {
    buf.storage = lh::Tensor::empty(dtype, device, {B, N, heads, D});
    buf.view = buf.storage.view();
  }
  return buf;
}

void upload(const Buffer& buf, const std::vector<float>& x) {
  std::vector<float> ordered = x;
  const auto& s = buf.view.shape;
  if (buf.strided) {
    for (std::size_t i = 0; i < x.size(); ++i) ordered[bhnd_index(s[1], s[2], s[3], i)] = x[i];
  }
  const std::vector<unsigned char> bytes = encode(ordered, buf.view.dtype);
  lh::copy_from_host(buf.view.device, buf.storage.data<void>(), bytes.data(), bytes.size());
}

std::vector<float> download(const Buffer& buf) {
  std::vector<unsigned char> bytes(buf.storage.view().nbytes());
  lh::synchronize(buf.view.device);
  lh::copy_to_host(buf.view.device, bytes.data(), buf.storage.data<void>(), bytes.size());
  const std::vector<float> ordered = decode(bytes, buf.view.dtype);
  if (!buf.strided) return ordered;
  const auto& s = buf.view.shape;
  std::vector<float> x(ordered.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = ordered[bhnd_index(s[1], s[2], s[3], i)];
  return x;
}

struct Outputs {
  std::vector<std::int32_t> indices;
  std::vector<float> out, dq, dk, dv;
};

struct RunFlags {
  bool backward = true;
  bool strided = false;  // inputs and gradients as views of [B, H, N, D] buffers
};

Outputs run(const Problem& p, lh::Device device, lh::DType dtype, const lh::Config& config,
            const RunFlags& flags = {}) {
  const bool st = flags.strided;
  const Buffer q = make_buffer(p.B, p.N, p.H, p.D, dtype, device, st);
  const Buffer k = make_buffer(p.B, p.N, p.Hkv, p.D, dtype, device, st);
  const Buffer v = make_buffer(p.B, p.N, p.Hkv, p.D, dtype, device, st);
  const Buffer out = make_buffer(p.B, p.N, p.H, p.D, dtype, device, st);
  upload(q, p.q);
  upload(k, p.k);
  upload(v, p.v);
  lh::Context ctx;
  lh::forward(config, q.view, k.view, v.view, out.view, ctx);
  Outputs r;
  r.indices = ctx.indices();
  r.out = download(out);
  if (flags.backward) {
    const Buffer dout = make_buffer(p.B, p.N, p.H, p.D, dtype, device, st);
    const Buffer dq = make_buffer(p.B, p.N, p.H, p.D, dtype, device, st);
    const Buffer dk = make_buffer(p.B, p.N, p.Hkv, p.D, dtype, device, st);
    const Buffer dv = make_buffer(p.B, p.N, p.Hkv, p.D, dtype, device, st);
    upload(dout, p.dout);
    lh::backward(ctx, dout.view, dq.view, dk.view, dv.view);
    r.dq = download(dq);
    r.dk = download(dk);
    r.dv = download(dv);
  }
  return r;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& ref) {
  if (a.size() != ref.size()) return INFINITY;
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

double index_agreement(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b) {
  if (a.size() != b.size() || a.empty()) return 0;
  std::size_t same = 0;
  for (std::size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  return static_cast<double>(same) / static_cast<double>(a.size());
}

void expect_close(const Outputs& got, const Outputs& want, double tol, const std::string& what) {
  const double e[4] = {rel_l2(got.out, want.out), rel_l2(got.dq, want.dq), rel_l2(got.dk, want.dk),
                       rel_l2(got.dv, want.dv)};
  std::printf("[ shapes   ] %s: rel L2 out %.2e dq %.2e dk %.2e dv %.2e\n", what.c_str(), e[0],
              e[1], e[2], e[3]);
  EXPECT_LT(e[0], tol) << what << ": out";
  EXPECT_LT(e[1], tol) << what << ": dq";
  EXPECT_LT(e[2], tol) << what << ": dk";
  EXPECT_LT(e[3], tol) << what << ": dv";
}

bool cpu_available() {
  return lh::backend_available(lh::Device::kCPU);
}

lh::Config dilated(int levels, int pool, int topk, int dilation,
                   lh::Selection selection = lh::Selection::kOriginal) {
  lh::Config c;
  c.levels = levels;
  c.pool = pool;
  c.topk = topk;
  c.selection = selection;
  c.scorer = lh::Scorer::kDilated;
  c.dilation = dilation;
  return c;
}

// ---- the dilated scorer ---------------------------------------------------------------------

// The original's dilated case (tests/data/golden-dilated/d1) runs in CudaGolden.MatchesOriginal
// (lighthouse_cuda_test.cpp): the one golden loader reads its scorer and dilation into the Config.

// fp32: the GPU's scorer attention (reference kernels) and the CPU's differ in rounding only; on
// these inputs the selection is the same and every value agrees to float32 rounding. Original
// and causal selection.
TEST(CudaDilated, CloseToCpuInFloat32) {
  LIGHTHOUSE_REQUIRE_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend";
  for (const lh::Selection selection : {lh::Selection::kOriginal, lh::Selection::kCausal}) {
    const Problem p = random_problem(2, 4096, 2, 2, 64, 17);
    const lh::Config config = dilated(3, 4, 256, 4, selection);
    const Outputs gpu = run(p, lh::Device::kCUDA, lh::DType::kFloat32, config);
    const Outputs cpu = run(p, lh::Device::kCPU, lh::DType::kFloat32, config);
    EXPECT_EQ(gpu.indices, cpu.indices) << lh::selection_name(selection);
    expect_close(gpu, cpu, 1e-5,
                 std::string("dilated fp32 vs cpu, ") + lh::selection_name(selection));
  }
}

// bf16: cuDNN's scorer attention rounds its outputs to bf16, so near-ties among the scores may
// resolve differently from the CPU's float32 scorer (the spec says so), and one flip at a coarse
// level changes every entry refined under it: on random inputs about two thirds of the entries
// agree (0.645 on an H200, 2026-12-07). What must hold: the bf16 run follows the dilated scorer —
// it agrees with the CPU's dilated selection clearly more than the norm scorer's selection does —
// and its outputs stay close to the CPU's on the same rounded inputs.
TEST(CudaDilated, CloseToCpuInBfloat16) {
  LIGHTHOUSE_REQUIRE_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend";
  const Problem p = random_problem(1, 8192, 2, 2, 128, 23, lh::DType::kBFloat16);
  const lh::Config config = dilated(3, 4, 256, 4);
  const Outputs gpu = run(p, lh::Device::kCUDA, lh::DType::kBFloat16, config);
  const Outputs cpu = run(p, lh::Device::kCPU, lh::DType::kFloat32, config);
  lh::Config norm = config;
  norm.scorer = lh::Scorer::kNorm;
  const Outputs gpu_norm =
      run(p, lh::Device::kCUDA, lh::DType::kBFloat16, norm, {.backward = false});
  const double agree = index_agreement(gpu.indices, cpu.indices);
  const double agree_norm = index_agreement(gpu_norm.indices, cpu.indices);
  const double err = rel_l2(gpu.out, cpu.out), err_norm = rel_l2(gpu_norm.out, cpu.out);
  std::printf("[ shapes   ] dilated bf16 vs cpu fp32: %.4f of the index entries agree, out rel L2 "
              "%.3e; the norm scorer's run: %.4f, %.3e\n",
              agree, err, agree_norm, err_norm);
  EXPECT_GT(agree, 0.5);
  EXPECT_GT(agree, agree_norm + 0.1);
  EXPECT_LT(err, 0.2);
  EXPECT_LT(err, err_norm);
}

// q, k, v whose heads are not packed inside a token are copied before the scorer's attention;
// the result is the same bits as for packed inputs (the copies have the packed strides).
TEST(CudaDilated, StridedInputsGiveTheSameBits) {
  LIGHTHOUSE_REQUIRE_GPU();
  for (const lh::DType dtype : {lh::DType::kFloat32, lh::DType::kBFloat16}) {
    const Problem p = random_problem(2, 2048, 3, 3, 64, 31, dtype);
    const lh::Config config = dilated(3, 2, 256, 8);
    const Outputs packed = run(p, lh::Device::kCUDA, dtype, config);
    const Outputs strided = run(p, lh::Device::kCUDA, dtype, config, {.strided = true});
    EXPECT_EQ(packed.indices, strided.indices) << lh::dtype_name(dtype);
    EXPECT_TRUE(bits_equal(packed.out, strided.out)) << lh::dtype_name(dtype);
    EXPECT_TRUE(bits_equal(packed.dq, strided.dq)) << lh::dtype_name(dtype);
  }
}

// ---- grouped-query attention ----------------------------------------------------------------

lh::Config norm_config(int levels, int pool, int topk,
                       lh::Selection selection = lh::Selection::kOriginal) {
  lh::Config c;
  c.levels = levels;
  c.pool = pool;
  c.topk = topk;
  c.selection = selection;
  return c;
}

// [B, N, Hkv, D] -> [B, N, H, D]: query head h reads KV head h / (H / Hkv).
std::vector<float> expand_kv(const Problem& p, const std::vector<float>& x) {
  std::vector<float> out(p.q_numel());
  const std::int64_t G = p.H / p.Hkv;
  for (std::int64_t bn = 0; bn < p.B * p.N; ++bn) {
    for (std::int64_t h = 0; h < p.H; ++h) {
      std::copy_n(&x[(bn * p.Hkv + h / G) * p.D], p.D, &out[(bn * p.H + h) * p.D]);
    }
  }
  return out;
}

// [B, N, H, D] -> [B, N, Hkv, D]: the sum over each group's heads (double, head order).
std::vector<float> sum_groups(const Problem& p, const std::vector<float>& x) {
  std::vector<float> out(p.kv_numel());
  const std::int64_t G = p.H / p.Hkv;
  for (std::int64_t bn = 0; bn < p.B * p.N; ++bn) {
    for (std::int64_t g = 0; g < p.Hkv; ++g) {
      for (std::int64_t d = 0; d < p.D; ++d) {
        double sum = 0;
        for (std::int64_t i = 0; i < G; ++i) sum += x[(bn * p.H + g * G + i) * p.D + d];
        out[(bn * p.Hkv + g) * p.D + d] = static_cast<float>(sum);
      }
    }
  }
  return out;
}

// [B, Hkv, S] -> [B, H, S].
std::vector<std::int32_t> expand_indices(const Problem& p, const std::vector<std::int32_t>& idx) {
  const std::int64_t G = p.H / p.Hkv;
  const std::int64_t S = static_cast<std::int64_t>(idx.size()) / (p.B * p.Hkv);
  std::vector<std::int32_t> out(static_cast<std::size_t>(p.B * p.H * S));
  for (std::int64_t b = 0; b < p.B; ++b) {
    for (std::int64_t h = 0; h < p.H; ++h) {
      std::copy_n(&idx[(b * p.Hkv + h / G) * S], S, &out[(b * p.H + h) * S]);
    }
  }
  return out;
}

struct GqaCase {
  std::int64_t heads, kv_heads;
  lh::Selection selection;
};

// "H4Hkv2original": appended piece by piece (GCC 12 warns falsely, -Wrestrict, on
// "literal" + std::string&&).
std::string gqa_name(const GqaCase& c) {
  std::string name = "H";
  name += std::to_string(c.heads);
  name += "Hkv";
  name += std::to_string(c.kv_heads);
  name += lh::selection_name(c.selection);
  return name;
}

class CudaGqa : public ::testing::TestWithParam<GqaCase> {};

// fp32 (the reference attention kernels): the same selection as the CPU backend (the scores are
// the same bits on both: norms of the same float32 rows, maximum over the group), the values to
// float32 rounding (the CPU sums the group's K/V gradients in double, the GPU in float). GQA and
// MQA, original and causal selection.
TEST_P(CudaGqa, CloseToCpuInFloat32) {
  LIGHTHOUSE_REQUIRE_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend";
  const GqaCase c = GetParam();
  const Problem p = random_problem(2, 4096, c.heads, c.kv_heads, 64, 41);
  const lh::Config config = norm_config(3, 4, 256, c.selection);
  const Outputs gpu = run(p, lh::Device::kCUDA, lh::DType::kFloat32, config);
  const Outputs cpu = run(p, lh::Device::kCPU, lh::DType::kFloat32, config);
  EXPECT_EQ(gpu.indices, cpu.indices);
  expect_close(gpu, cpu, 1e-5, std::string("gqa fp32 vs cpu, ") += gqa_name(c));
}

// bf16 through cuDNN's native grouped-query attention: the same selection as the CPU
// (float32, on the same rounded inputs) and values within 1e-2.
TEST_P(CudaGqa, CloseToCpuInBfloat16) {
  LIGHTHOUSE_REQUIRE_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend";
  const GqaCase c = GetParam();
  const Problem p = random_problem(1, 8192, c.heads, c.kv_heads, 128, 43, lh::DType::kBFloat16);
  const lh::Config config = norm_config(3, 4, 512, c.selection);
  const Outputs gpu = run(p, lh::Device::kCUDA, lh::DType::kBFloat16, config);
  const Outputs cpu = run(p, lh::Device::kCPU, lh::DType::kFloat32, config);
  EXPECT_EQ(gpu.indices, cpu.indices);
  expect_close(gpu, cpu, 1e-2, std::string("gqa bf16 vs cpu fp32, ") += gqa_name(c));
}

// Strided inputs and gradients (views of [B, H, N, D] buffers): the same bits as packed ones.
TEST_P(CudaGqa, StridedInputsGiveTheSameBits) {
  LIGHTHOUSE_REQUIRE_GPU();
  const GqaCase c = GetParam();
  for (const lh::DType dtype : {lh::DType::kFloat32, lh::DType::kBFloat16}) {
    const Problem p = random_problem(1, 2048, c.heads, c.kv_heads, 64, 47, dtype);
    const lh::Config config = norm_config(3, 4, 128, c.selection);
    const Outputs packed = run(p, lh::Device::kCUDA, dtype, config);
    const Outputs strided = run(p, lh::Device::kCUDA, dtype, config, {.strided = true});
    EXPECT_EQ(packed.indices, strided.indices) << lh::dtype_name(dtype);
    EXPECT_TRUE(bits_equal(packed.out, strided.out)) << lh::dtype_name(dtype);
    EXPECT_TRUE(bits_equal(packed.dq, strided.dq)) << lh::dtype_name(dtype);
    EXPECT_TRUE(bits_equal(packed.dk, strided.dk)) << lh::dtype_name(dtype);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaGqa,
                         ::testing::Values(GqaCase{4, 2, lh::Selection::kOriginal},
                                           GqaCase{4, 1, lh::Selection::kOriginal},
                                           GqaCase{8, 2, lh::Selection::kCausal}),
                         [](const auto& info) { return gqa_name(info.param); });

// Query heads that are copies within each group and K/V expanded to every head: the GQA run on
// the GPU is the multi-head run on the expanded tensors (fp32: same selection, same forward bits;
// dq to rounding; dk, dv the sums over each group's heads).
TEST(CudaGqaExpanded, CopiedQueryHeadsGiveTheExpandedMultiHeadRun) {
  LIGHTHOUSE_REQUIRE_GPU();
  Problem gqa = random_problem(1, 4096, 4, 2, 64, 53);
  for (std::int64_t t = 0; t < gqa.N; ++t) {  // query head 2g + 1 := head 2g
    for (std::int64_t g = 0; g < gqa.Hkv; ++g) {
      std::copy_n(&gqa.q[(t * gqa.H + 2 * g) * gqa.D], gqa.D,
                  &gqa.q[(t * gqa.H + 2 * g + 1) * gqa.D]);
    }
  }
  Problem mha = gqa;
  mha.Hkv = mha.H;
  mha.k = expand_kv(gqa, gqa.k);
  mha.v = expand_kv(gqa, gqa.v);
  for (const lh::DType dtype : {lh::DType::kFloat32, lh::DType::kBFloat16}) {
    const lh::Config config = norm_config(3, 4, 256);
    const Outputs g = run(gqa, lh::Device::kCUDA, dtype, config);
    const Outputs m = run(mha, lh::Device::kCUDA, dtype, config);
    EXPECT_EQ(expand_indices(gqa, g.indices), m.indices) << lh::dtype_name(dtype);
    const double tol = dtype == lh::DType::kFloat32 ? 1e-5 : 1e-2;
    if (dtype == lh::DType::kFloat32) {
      EXPECT_TRUE(bits_equal(g.out, m.out)) << "forward differs from the expanded MHA run";
    }
    Outputs want{m.indices, m.out, m.dq, sum_groups(gqa, m.dk), sum_groups(gqa, m.dv)};
    expect_close(g, want, tol, std::string("gqa vs expanded mha, ") + lh::dtype_name(dtype));
  }
}

// levels == 1 (no selection: dense causal attention on the tokens) in GQA form, against the CPU.
TEST(CudaGqaExpanded, OneLevelIsDenseGroupedQueryAttention) {
  LIGHTHOUSE_REQUIRE_GPU();
  if (!cpu_available()) GTEST_SKIP() << "no CPU backend";
  const Problem p = random_problem(1, 1024, 4, 1, 64, 59);
  const lh::Config config = norm_config(1, 4, 1024);
  const Outputs gpu = run(p, lh::Device::kCUDA, lh::DType::kFloat32, config);
  const Outputs cpu = run(p, lh::Device::kCPU, lh::DType::kFloat32, config);
  expect_close(gpu, cpu, 1e-5, "gqa levels 1 fp32 vs cpu");
}

}  // namespace
