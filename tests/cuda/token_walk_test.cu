// The two token-wise sums over levels, launched directly (cuda/stages.hpp) on random position maps
// and rows, against a host loop in the spec's order, bit for bit: the forward scatter
// (out[t] = sum_l o_sel[position(l, (t + 1) / c_l - 1)]) and the gather's backward
// (dx[t] = sum_l dx_sel[position(l, t / c_l)] / c_l). The shapes cover the direct kernels
// (token_groups.cuh: 2 <= L <= 4, U = 2 and 4), the staged ones (L = 5) and both gather-backward
// launches (three tensors, one tensor); the rows include -0.0 and the maps unselected entries,
// which the direct kernels add as zero rows instead of skipping.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/stages.hpp"
#include "lighthouse/plan.hpp"
#include "support/device_buffer.hpp"
#include "support/require_gpu.hpp"

namespace lighthouse::cuda {
namespace {

using testing::DeviceBuffer;

float bf16_to_float(std::uint16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even (the inputs here are finite).
std::uint16_t float_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

struct WalkCase {
  int levels, pool;
  std::int64_t batch, seq, heads, head_dim;
};

std::string name_of(const WalkCase& c) {
  std::ostringstream name;
  name << "L" << c.levels << "p" << c.pool << "_B" << c.batch << "N" << c.seq << "H" << c.heads
       << "D" << c.head_dim;
  return name.str();
}

// A plan, its geometry, a random position map (about 60% selected, positions anywhere in [0, S))
// and random bf16 rows [BH, S, D] with some -0.0.
struct Fixture {
  Plan plan;
  Geometry g;
  std::vector<std::int32_t> position;           // [BH, P]
  std::vector<std::vector<std::uint16_t>> sel;  // 3 x [BH, S, D]

  explicit Fixture(const WalkCase& c, std::uint32_t seed) {
    Config config;
    config.levels = c.levels;
    config.pool = c.pool;
    config.topk = 128;
    plan = make_plan(config, c.batch, c.seq, c.heads, c.head_dim);
    g = make_geometry(plan);
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> value(-2.f, 2.f);
    std::uniform_int_distribution<std::int32_t> any_row(0, static_cast<std::int32_t>(g.S - 1));
    std::bernoulli_distribution selected(0.6), negative_zero(0.02);
    position.resize(static_cast<std::size_t>(g.batch * g.heads * g.pyramid_size));
    for (auto& p : position) p = selected(gen) ? any_row(gen) : -1;
    sel.resize(3);
    for (auto& rows : sel) {
      rows.resize(static_cast<std::size_t>(g.batch * g.heads * g.S * g.head_dim));
      for (auto& x : rows)
        x = negative_zero(gen) ? std::uint16_t{0x8000} : float_to_bf16(value(gen));
    }
  }

  std::size_t token_elements() const {
    return static_cast<std::size_t>(g.batch * g.seq * g.heads * g.head_dim);
  }
  TokenTensor token_tensor(const DeviceBuffer& buffer) const {
    return TokenTensor{buffer.get(), g.seq * g.heads * g.head_dim, g.heads * g.head_dim,
                       g.head_dim};
  }

  // The host sum of one token's levels, in order from +0.0, rounded once. entry(l, t): the
  // level-l entry reaching t (or -1); scaled: multiply each row by 1 / c_l.
  template <typename Entry>
  std::vector<std::uint16_t> host_sum(const std::vector<std::uint16_t>& rows, Entry entry,
                                      bool scaled) const {
    std::vector<std::uint16_t> out(token_elements());
    const std::int64_t H = g.heads, D = g.head_dim;
    for (std::int64_t b = 0; b < g.batch; ++b)
      for (std::int64_t t = 0; t < g.seq; ++t)
        for (std::int64_t h = 0; h < H; ++h) {
          const std::int64_t bh = b * H + h;
          for (std::int64_t d = 0; d < D; ++d) {
            float acc = 0.f;
            for (int l = 0; l < g.levels; ++l) {
              const std::int64_t i = entry(l, t);
              if (i < 0) continue;
              const std::int32_t s = position[bh * g.pyramid_size + g.offset[l] + i];
              if (s < 0) continue;
              const float x = bf16_to_float(rows[(bh * g.S + s) * D + d]);
              acc += scaled ? x * std::ldexp(1.f, -l * g.log2_pool) : x;
            }
            out[((b * g.seq + t) * H + h) * D + d] = float_to_bf16(acc);
          }
        }
    return out;
  }
};

std::int64_t first_difference(const std::vector<std::uint16_t>& a,
                              const std::vector<std::uint16_t>& b) {
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return static_cast<std::int64_t>(i);
  }
  return -1;
}

const std::vector<WalkCase>& walk_cases() {
  static const std::vector<WalkCase> cases = {
      {2, 2, 2, 4096, 3, 64},   // direct, U = 2
      {3, 4, 2, 8192, 3, 128},  // direct, U = 4 (the default pyramid)
      {3, 2, 1, 4096, 2, 64},   // direct, U = 2, three levels
      {4, 4, 1, 16384, 2, 64},  // direct, four levels
      {5, 2, 1, 8192, 2, 64},   // staged kernels
  };
  return cases;
}

class TokenWalk : public ::testing::TestWithParam<WalkCase> {};

TEST_P(TokenWalk, ScatterMatchesHostBits) {
  LIGHTHOUSE_REQUIRE_GPU();
  const Fixture f(GetParam(), 11);
  const DeviceBuffer position = DeviceBuffer::from_host(f.position);
  const DeviceBuffer rows = DeviceBuffer::from_host(f.sel[0]);
  const DeviceBuffer out(f.token_elements() * 2);
  CUDA_CHECK(cudaMemset(out.get(), 0xff, out.bytes()));  // poison: every element is written
  launch_scatter(f.g, DType::kBFloat16, position.as<std::int32_t>(), rows.get(),
                 f.token_tensor(out), nullptr);
  const auto reach = [&](int l, std::int64_t t) {
    return ((t + 1) >> (l * f.g.log2_pool)) - 1;  // -1 before the first block's end
  };
  const auto want = f.host_sum(f.sel[0], reach, /*scaled=*/false);
  const auto got = out.to_host<std::uint16_t>();
  EXPECT_EQ(first_difference(got, want), -1) << name_of(GetParam());
}

TEST_P(TokenWalk, GatherBackwardMatchesHostBits) {
  LIGHTHOUSE_REQUIRE_GPU();
  const Fixture f(GetParam(), 12);
  const DeviceBuffer position = DeviceBuffer::from_host(f.position);
  const auto spread = [&](int l, std::int64_t t) { return t >> (l * f.g.log2_pool); };
  std::vector<DeviceBuffer> sel, dx;
  for (int x = 0; x < 3; ++x) {
    sel.push_back(DeviceBuffer::from_host(f.sel[x]));
    dx.emplace_back(f.token_elements() * 2);
    CUDA_CHECK(cudaMemset(dx.back().get(), 0xff, dx.back().bytes()));
  }
  // Three tensors in one launch, then the first again alone (the buffer-reuse order's launch).
  launch_gather_backward(f.g, DType::kBFloat16, position.as<std::int32_t>(), sel[0].get(),
                         sel[1].get(), sel[2].get(), f.token_tensor(dx[0]), f.token_tensor(dx[1]),
                         f.token_tensor(dx[2]), nullptr);
  std::vector<std::vector<std::uint16_t>> three;
  for (int x = 0; x < 3; ++x) three.push_back(dx[x].to_host<std::uint16_t>());
  CUDA_CHECK(cudaMemset(dx[0].get(), 0xff, dx[0].bytes()));
  launch_gather_backward(f.g, DType::kBFloat16, position.as<std::int32_t>(), sel[0].get(),
                         f.token_tensor(dx[0]), nullptr);
  const auto alone = dx[0].to_host<std::uint16_t>();
  for (int x = 0; x < 3; ++x) {
    const auto want = f.host_sum(f.sel[x], spread, /*scaled=*/true);
    EXPECT_EQ(first_difference(three[x], want), -1) << name_of(GetParam()) << " tensor " << x;
    if (x == 0) EXPECT_EQ(first_difference(alone, want), -1) << name_of(GetParam()) << " alone";
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, TokenWalk, ::testing::ValuesIn(walk_cases()),
                         [](const auto& info) { return name_of(info.param); });

}  // namespace
}  // namespace lighthouse::cuda
