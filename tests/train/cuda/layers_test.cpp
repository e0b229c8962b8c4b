// Each kernel of the CUDA model, forward and backward, against the CPU trainer's layer functions
// in float64 (train/layers.hpp) on small random shapes, in float32 and bfloat16 activations.
// Outputs start as NaN bytes, so an element a kernel does not write fails the comparison.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gpu_test_support.hpp"
#include "support/require_gpu.hpp"
#include "train/cuda/matmul.hpp"
#include "train/cuda/ops.hpp"
#include "train/layers.hpp"

namespace lhtest::gpu {
namespace {

namespace tc = lighthouse::train::cuda;
namespace tr = lighthouse::train;
using lighthouse::testing::GpuTest;
using Shape2 = std::pair<std::int64_t, std::int64_t>;  // rows, dim

// bf16 outputs carry 8 significant bits (relative rounding 2^-9); fp32 only accumulation order.
double tolerance(DType dtype) {
  return dtype == DType::kBFloat16 ? 1e-2 : 1e-5;
}

class TrainCudaLayers : public GpuTest, public ::testing::WithParamInterface<DType> {};

std::string name(const ::testing::TestParamInfo<DType>& info) {
  return lighthouse::dtype_name(info.param);
}

TEST_P(TrainCudaLayers, EmbeddingForwardCopiesRows) {
  const std::int64_t rows = 37, dim = 24, vocab = 11;
  const auto tokens = random_tokens(rows, vocab, 1);
  const auto table = rounded(DType::kFloat32, random_values(vocab * dim, 2));
  DeviceBuffer d_tokens = upload_raw(tokens), d_table = upload(table, DType::kFloat32);
  DeviceBuffer d_x = poisoned(rows * dim * 4);
  tc::embedding_forward(d_tokens.as<std::int32_t>(), d_table.as<float>(), d_x.as<float>(), rows,
                        dim, nullptr);
  std::vector<double> want(rows * dim);
  tr::embedding_forward<double>(tokens.data(), table.data(), want.data(), rows, dim);
  EXPECT_EQ(download(d_x, DType::kFloat32, want.size()), want);
}

// The backward is one_hot(tokens)^T dy on cuBLASLt; rows past the vocabulary (padding) stay 0.
TEST_P(TrainCudaLayers, EmbeddingBackwardIsOneHotProduct) {
  const DType act = GetParam();
  const std::int64_t rows = 300, dim = 32, vocab = 13, padded = 16;
  const auto tokens = random_tokens(rows, vocab, 3);
  const auto dy = rounded(act, random_values(rows * dim, 4));
  auto table_grad = rounded(DType::kFloat32, random_values(padded * dim, 5));
  for (std::int64_t i = vocab * dim; i < padded * dim; ++i) table_grad[i] = 0;
  DeviceBuffer d_tokens = upload_raw(tokens), d_dy = upload(dy, act);
  DeviceBuffer d_grad = upload(table_grad, DType::kFloat32);
  DeviceBuffer d_hot = poisoned(rows * padded * lighthouse::dtype_size(act));
  tc::one_hot(d_tokens.as<std::int32_t>(), d_hot.get(), act, rows, padded, nullptr);
  tc::Matmul mm(nullptr);
  mm.run(tr::Trans::kYes, tr::Trans::kNo, padded, dim, rows, {d_hot.get(), act, padded},
         {d_dy.get(), act, dim}, 1.0f, d_grad.get(), d_grad.get(), DType::kFloat32, dim);
  std::vector<double> want = table_grad;
  tr::embedding_backward<double>(tokens.data(), dy.data(), want.data(), rows, dim);
  expect_close(download(d_grad, DType::kFloat32, want.size()), want, 1e-5, "dtable");
}

TEST_P(TrainCudaLayers, RmsNormForward) {
  const DType act = GetParam();
  // One vector per thread, several, and the largest dims (8 vectors per thread).
  for (const auto& [rows, dim] :
       std::vector<Shape2>{{37, 64}, {300, 1024}, {5, 4096}, {3, 8192}, {9, 36}}) {
    const auto x = rounded(DType::kFloat32, random_values(rows * dim, 6, 2.0));
    auto gain = rounded(DType::kFloat32, random_values(dim, 7, 0.5));
    for (double& g : gain) g = round_to(DType::kFloat32, 1.0 + g);
    const float eps = 1e-5f;
    DeviceBuffer d_x = upload(x, DType::kFloat32), d_gain = upload(gain, DType::kFloat32);
    DeviceBuffer d_y = poisoned(rows * dim * 4), d_inv = poisoned(rows * 4);
    tc::rmsnorm_forward(d_x.as<float>(), d_gain.as<float>(), d_y.get(), act, d_inv.as<float>(),
                        rows, dim, eps, nullptr);
    std::vector<double> y(rows * dim), inv(rows);
    tr::rmsnorm_forward<double>(x.data(), gain.data(), y.data(), inv.data(), rows, dim, eps);
    const std::string shape = std::string(" ") + std::to_string(rows) + "x" + std::to_string(dim);
    expect_close(download(d_y, act, y.size()), y, tolerance(act), "y" + shape);
    expect_close(download(d_inv, DType::kFloat32, inv.size()), inv, 1e-5, "inv_rms" + shape);
  }
}

TEST_P(TrainCudaLayers, RmsNormBackwardAddsIntoDxAndGain) {
  const DType act = GetParam();
  for (const auto& [rows, dim] :
       std::vector<Shape2>{{37, 64}, {300, 1024}, {129, 4096}, {2, 8192}, {9, 36}}) {
    const auto x = rounded(DType::kFloat32, random_values(rows * dim, 8, 2.0));
    auto gain = rounded(DType::kFloat32, random_values(dim, 9, 0.5));
    const auto dy = rounded(DType::kFloat32, random_values(rows * dim, 10));
    const auto dx0 = rounded(DType::kFloat32, random_values(rows * dim, 11));
    const auto dgain0 = rounded(DType::kFloat32, random_values(dim, 12));
    std::vector<double> y(rows * dim), inv(rows);
    tr::rmsnorm_forward<double>(x.data(), gain.data(), y.data(), inv.data(), rows, dim, 1e-5);
    inv = rounded(DType::kFloat32, inv);
    DeviceBuffer d_x = upload(x, DType::kFloat32), d_gain = upload(gain, DType::kFloat32);
    DeviceBuffer d_inv = upload(inv, DType::kFloat32), d_dy = upload(dy, DType::kFloat32);
    DeviceBuffer d_dx = upload(dx0, DType::kFloat32), d_dgain = upload(dgain0, DType::kFloat32);
    DeviceBuffer d_copy = poisoned(rows * dim * 4);
    DeviceBuffer d_scratch = poisoned(tc::rmsnorm_backward_scratch(rows, dim) * 4);
    tc::rmsnorm_backward(d_x.as<float>(), d_gain.as<float>(), d_inv.as<float>(), d_dy.as<float>(),
                         d_dx.as<float>(), d_copy.get(), act, d_dgain.as<float>(),
                         d_scratch.as<float>(), rows, dim, nullptr);
    std::vector<double> dx = dx0, dgain = dgain0;
    tr::rmsnorm_backward<double>(x.data(), gain.data(), inv.data(), dy.data(), dx.data(),
                                 dgain.data(), rows, dim);
    const std::string shape = std::string(" ") + std::to_string(rows) + "x" + std::to_string(dim);
    const auto got_dx = download(d_dx, DType::kFloat32, dx.size());
    expect_close(got_dx, dx, 1e-5, "dx" + shape);
    expect_close(download(d_dgain, DType::kFloat32, dgain.size()), dgain, 1e-5, "dgain" + shape);
    // The copy is the updated dx, rounded to the activation dtype.
    EXPECT_EQ(download(d_copy, act, dx.size()), rounded(act, got_dx)) << "dx copy" << shape;
  }
}

TEST_P(TrainCudaLayers, RotaryRotatesQAndKInPlace) {
  const DType act = GetParam();
  struct Shape {
    std::int64_t batch, seq, heads, head_dim;
  };
  // Vector path (D/2 a multiple of 4), scalar path (D/2 = 3), a full-size head.
  for (const Shape sh : {Shape{2, 5, 3, 8}, Shape{1, 7, 2, 6}, Shape{1, 33, 2, 128}}) {
    const std::int64_t rows = sh.batch * sh.seq, C = sh.heads * sh.head_dim, half = sh.head_dim / 2;
    std::vector<float> cos(sh.seq * half), sin(cos.size());
    tr::rotary_tables<float>(sh.seq, sh.head_dim, 10000.0, cos.data(), sin.data());
    const std::vector<double> cos_d(cos.begin(), cos.end()), sin_d(sin.begin(), sin.end());
    DeviceBuffer d_cos = upload_raw(cos), d_sin = upload_raw(sin);
    const auto qkv = rounded(act, random_values(rows * 3 * C, 13));
    for (const bool inverse : {false, true}) {
      DeviceBuffer d_qkv = upload(qkv, act);
      tc::rotary_qk(d_qkv.get(), act, rows, sh.seq, sh.heads, sh.head_dim, d_cos.as<float>(),
                    d_sin.as<float>(), inverse, nullptr);
      std::vector<double> want = qkv;
      for (const std::int64_t column : {std::int64_t{0}, C}) {
        tr::rotary_apply<double>(want.data() + column, sh.batch, sh.seq, sh.heads, sh.head_dim,
                                 3 * C, cos_d.data(), sin_d.data(), inverse);
      }
      const auto got = download(d_qkv, act, want.size());
      const std::string what =
          std::string(inverse ? "inverse" : "forward") + " D=" + std::to_string(sh.head_dim);
      expect_close(got, want, tolerance(act), what);
      for (std::int64_t r = 0; r < rows; ++r) {  // v untouched
        for (std::int64_t i = 2 * C; i < 3 * C; ++i) {
          ASSERT_EQ(got[r * 3 * C + i], qkv[r * 3 * C + i]) << what << " v changed";
        }
      }
    }
  }
}

TEST_P(TrainCudaLayers, SwiGluForwardAndBackward) {
  const DType act = GetParam();
  const std::int64_t rows = 29, hidden = 40;
  auto hg = random_values(rows * 2 * hidden, 14, 2.0);
  hg[3] = 40.0;  // saturated sigmoids
  hg[5] = -40.0;
  hg = rounded(act, hg);
  const auto da = rounded(act, random_values(rows * hidden, 15));
  DeviceBuffer d_hg = upload(hg, act), d_da = upload(da, act);
  DeviceBuffer d_a = poisoned(rows * hidden * 4), d_dhg = poisoned(rows * 2 * hidden * 4);
  tc::swiglu_forward(d_hg.get(), d_a.get(), act, rows, hidden, nullptr);
  tc::swiglu_backward(d_hg.get(), d_da.get(), d_dhg.get(), act, rows, hidden, nullptr);
  std::vector<double> a(rows * hidden), dhg(rows * 2 * hidden);
  tr::swiglu_forward<double>(hg.data(), a.data(), rows, hidden);
  tr::swiglu_backward<double>(hg.data(), da.data(), dhg.data(), rows, hidden);
  expect_close(download(d_a, act, a.size()), a, tolerance(act), "a");
  expect_close(download(d_dhg, act, dhg.size()), dhg, tolerance(act), "dhg");
}

// Logits with a padded leading dimension whose padding holds NaN: the kernels must not read it,
// and the backward must write zeros there.
TEST_P(TrainCudaLayers, CrossEntropyForwardAndBackward) {
  const DType act = GetParam();
  const std::int64_t rows = 45, vocab = 257, ld = 264;
  const auto logits = rounded(DType::kFloat32, random_values(rows * vocab, 16, 3.0));
  auto targets = random_tokens(rows, static_cast<int>(vocab), 17);
  targets[2] = -1;
  targets[30] = -1;
  targets[31] = 256;
  std::vector<double> padded(rows * ld, std::numeric_limits<double>::quiet_NaN());
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t v = 0; v < vocab; ++v) padded[r * ld + v] = logits[r * vocab + v];
  }
  DeviceBuffer d_logits = upload(padded, DType::kFloat32), d_targets = upload_raw(targets);
  DeviceBuffer d_loss = poisoned(rows * 4), d_lse = poisoned(rows * 4);
  tc::cross_entropy_forward(d_logits.as<float>(), ld, d_targets.as<std::int32_t>(), rows, vocab,
                            d_loss.as<float>(), d_lse.as<float>(), nullptr);
  std::vector<double> loss(rows), lse(rows);
  std::int64_t counted = 0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const double* z = logits.data() + r * vocab;
    double mx = z[0], sum = 0;
    for (std::int64_t v = 1; v < vocab; ++v) mx = std::max(mx, z[v]);
    for (std::int64_t v = 0; v < vocab; ++v) sum += std::exp(z[v] - mx);
    lse[r] = mx + std::log(sum);
    loss[r] = targets[r] >= 0 ? lse[r] - z[targets[r]] : 0.0;
    counted += targets[r] >= 0;
  }
  expect_close(download(d_loss, DType::kFloat32, rows), loss, 1e-5, "loss per row");
  expect_close(download(d_lse, DType::kFloat32, rows), lse, 1e-5, "lse");

  const double scale = 0.37;
  std::vector<double> dlogits(rows * vocab);
  const double mean =
      tr::cross_entropy<double>(logits.data(), targets.data(), rows, vocab, dlogits.data(), scale);
  double sum = 0;
  for (double l : loss) sum += l;
  EXPECT_NEAR(sum / static_cast<double>(counted), mean, 1e-12);
  const auto grad_scale = static_cast<float>(scale / static_cast<double>(counted));
  // bf16 into its own buffer; fp32 in place over the logits (the model's fp32 path).
  DeviceBuffer d_out = act == DType::kBFloat16 ? poisoned(rows * ld * 2) : DeviceBuffer();
  void* out = act == DType::kBFloat16 ? d_out.get() : d_logits.get();
  tc::cross_entropy_backward(d_logits.as<float>(), ld, d_lse.as<float>(),
                             d_targets.as<std::int32_t>(), rows, vocab, grad_scale, out, act,
                             nullptr);
  const auto got = download(act == DType::kBFloat16 ? d_out : d_logits, act, rows * ld);
  std::vector<double> got_real(rows * vocab);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t v = 0; v < ld; ++v) {
      if (v < vocab) {
        got_real[r * vocab + v] = got[r * ld + v];
      } else {
        ASSERT_EQ(got[r * ld + v], 0.0) << "padding of row " << r;
      }
    }
  }
  expect_close(got_real, dlogits, tolerance(act), "dlogits");
  for (std::int64_t v = 0; v < vocab; ++v) ASSERT_EQ(got_real[2 * vocab + v], 0.0) << "ignored row";
}

INSTANTIATE_TEST_SUITE_P(Dtypes, TrainCudaLayers,
                         ::testing::Values(DType::kFloat32, DType::kBFloat16), name);

}  // namespace
}  // namespace lhtest::gpu
