// The fused AdamW kernel and the gradient norm against train/optimizer.cpp: with the same
// gradients and clipping factor the fp32 weights and moments are the same bits as AdamW<float>'s
// (the kernel repeats its double arithmetic without contractions), decayed and undecayed
// parameters alike; the bf16 copies are the rounded weights; the norm matches clip_grad_norm's
// and is the same bits on every run; gaps between parameters stay zero.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "gpu_test_support.hpp"
#include "support/require_gpu.hpp"
#include "train/cuda/ops.hpp"
#include "train/optimizer.hpp"

namespace lhtest::gpu {
namespace {

namespace tc = lighthouse::train::cuda;
namespace tr = lighthouse::train;
using lighthouse::testing::GpuTest;

class TrainCudaAdamW : public GpuTest {};

TEST_F(TrainCudaAdamW, MatchesCpuOptimizerBitForBit) {
  const std::vector<std::int64_t> sizes = {5000, 300, 2 * tc::kAdamWChunk + 17};
  const std::vector<bool> decays = {true, false, true};
  std::vector<std::int64_t> offsets;
  std::int64_t n = 0;
  std::vector<tr::Param<float>> params;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    offsets.push_back(n);
    n += (sizes[i] + tc::kAdamWChunk - 1) / tc::kAdamWChunk * tc::kAdamWChunk;
    tr::Param<float> p;
    p.name = std::string("p") + std::to_string(i);
    p.shape = {sizes[i]};
    const auto v = random_values(static_cast<std::size_t>(sizes[i]), 30 + i, 0.1);
    p.value.assign(v.begin(), v.end());
    p.grad.assign(p.value.size(), 0.0f);
    p.decay = decays[i];
    params.push_back(std::move(p));
  }
  std::vector<std::uint8_t> flags(static_cast<std::size_t>(n / tc::kAdamWChunk));
  std::vector<float> arena(static_cast<std::size_t>(n), 0.0f);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    std::copy(params[i].value.begin(), params[i].value.end(), arena.begin() + offsets[i]);
    const std::int64_t first = offsets[i] / tc::kAdamWChunk;
    const std::int64_t count = (sizes[i] + tc::kAdamWChunk - 1) / tc::kAdamWChunk;
    for (std::int64_t c = 0; c < count; ++c) flags[static_cast<std::size_t>(first + c)] = decays[i];
  }
  const std::vector<float> zeros(arena.size(), 0.0f);
  DeviceBuffer value = upload_raw(arena), m = upload_raw(zeros), v = upload_raw(zeros);
  DeviceBuffer grad = upload_raw(zeros), flag = upload_raw(flags);
  DeviceBuffer copy = poisoned(arena.size() * 2);
  DeviceBuffer partials(tc::grad_sum_squares_scratch(n) * 8), total(8);

  tr::AdamWConfig config;
  tr::AdamW<float> cpu(config, params);
  const double lr = 3e-3, clip = 0.5;
  for (int step = 1; step <= 3; ++step) {
    std::vector<float> g(arena.size(), 0.0f);
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const auto r = random_values(static_cast<std::size_t>(sizes[i]), 100 * step + i, 0.01);
      params[i].grad.assign(r.begin(), r.end());
      std::copy(params[i].grad.begin(), params[i].grad.end(), g.begin() + offsets[i]);
    }
    grad = upload_raw(g);
    tc::grad_sum_squares(grad.as<float>(), n, partials.as<double>(), total.as<double>(), nullptr);
    const double ss = total.to_host<double>()[0];
    tc::grad_sum_squares(grad.as<float>(), n, partials.as<double>(), total.as<double>(), nullptr);
    const double again = total.to_host<double>()[0];
    EXPECT_EQ(std::memcmp(&ss, &again, sizeof ss), 0) << "the norm must be the same bits";
    const double norm = tr::clip_grad_norm<float>(params, clip);  // also scales the CPU grads
    EXPECT_NEAR(std::sqrt(ss), norm, 1e-12 * norm);
    ASSERT_GT(norm, clip) << "the test should exercise clipping";
    cpu.step(params, lr);

    tc::AdamWStep s;
    s.lr = lr;
    s.beta1 = config.beta1;
    s.beta2 = config.beta2;
    s.eps = config.eps;
    s.weight_decay = config.weight_decay;
    s.c1 = 1.0 - std::pow(config.beta1, step);
    s.c2 = 1.0 - std::pow(config.beta2, step);
    s.grad_scale = static_cast<float>(clip / (norm + 1e-12));
    tc::adamw_update(value.as<float>(), grad.as<float>(), m.as<float>(), v.as<float>(), copy.get(),
                     flag.as<std::uint8_t>(), n, s, nullptr);
    const auto got_value = value.to_host<float>(), got_m = m.to_host<float>();
    const auto got_v = v.to_host<float>();
    const auto got_copy = download(copy, DType::kBFloat16, arena.size());
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const auto slice = [&](const std::vector<float>& a) {
        return std::vector<float>(a.begin() + offsets[i], a.begin() + offsets[i] + sizes[i]);
      };
      const std::string what = std::string("step ") + std::to_string(step) + " " + params[i].name;
      expect_same_bits(slice(got_value), params[i].value, what + " value");
      expect_same_bits(slice(got_m), cpu.first_moments()[i], what + " m");
      expect_same_bits(slice(got_v), cpu.second_moments()[i], what + " v");
      for (std::int64_t j = offsets[i] + sizes[i]; j < (i + 1 < sizes.size() ? offsets[i + 1] : n);
           ++j) {
        ASSERT_EQ(got_value[j], 0.0f) << what << ": gap " << j;
      }
    }
    for (std::size_t j = 0; j < arena.size(); ++j) {
      ASSERT_EQ(got_copy[j], round_to(DType::kBFloat16, got_value[j])) << "bf16 copy " << j;
    }
  }
}

}  // namespace
}  // namespace lhtest::gpu
