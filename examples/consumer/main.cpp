// Lighthouse through its installed package: plan a shape, run forward and backward on small
// CPU tensors, and check the gradients against central differences of <out, dout> along a
// random direction (float64, so the difference is accurate to ~1e-9). Exit status 0 on success.
#include <lighthouse/lighthouse.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

namespace lh = lighthouse;

namespace {

constexpr std::int64_t B = 1, N = 1024, H = 2, D = 16;

lh::Tensor random_tensor(std::mt19937_64& gen) {
  lh::Tensor t = lh::Tensor::empty(lh::DType::kFloat64, lh::Device::kCPU, {B, N, H, D});
  std::normal_distribution<double> normal;
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = normal(gen);
  return t;
}

double dot(const lh::Tensor& a, const lh::Tensor& b) {
  double sum = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) sum += a.data<double>()[i] * b.data<double>()[i];
  return sum;
}

// <Lighthouse(q + t*dq, k + t*dk, v + t*dv), dout>
double objective(const lh::Config& cfg, const lh::Tensor (&x)[3], const lh::Tensor (&dir)[3],
                 double t, const lh::Tensor& dout) {
  lh::Tensor moved[3];
  for (int i = 0; i < 3; ++i) {
    moved[i] = lh::Tensor::empty(lh::DType::kFloat64, lh::Device::kCPU, {B, N, H, D});
    for (std::int64_t j = 0; j < x[i].numel(); ++j) {
      moved[i].data<double>()[j] = x[i].data<double>()[j] + t * dir[i].data<double>()[j];
    }
  }
  const lh::Tensor out = lh::Tensor::empty(lh::DType::kFloat64, lh::Device::kCPU, {B, N, H, D});
  lh::Context ctx;
  lh::forward(cfg, moved[0], moved[1], moved[2], out, ctx);
  return dot(out, dout);
}

}  // namespace

int main() {
  lh::Config cfg;
  cfg.levels = 2;
  cfg.pool = 4;
  cfg.topk = 128;
  const lh::Plan plan = lh::make_plan(cfg, B, N, H, D);
  const std::int64_t want_S = N / cfg.pool + (cfg.levels - 1) * cfg.pool * cfg.topk;
  std::printf("lighthouse %s: N %lld -> S %lld\n", lh::kVersion, static_cast<long long>(N),
              static_cast<long long>(plan.S));
  if (plan.S != want_S) {
    std::fprintf(stderr, "FAIL: S = %lld, expected %lld\n", static_cast<long long>(plan.S),
                 static_cast<long long>(want_S));
    return 1;
  }

  std::mt19937_64 gen(7);
  const lh::Tensor x[3] = {random_tensor(gen), random_tensor(gen), random_tensor(gen)};
  const lh::Tensor dir[3] = {random_tensor(gen), random_tensor(gen), random_tensor(gen)};
  const lh::Tensor dout = random_tensor(gen);
  const lh::Tensor out = lh::Tensor::empty(lh::DType::kFloat64, lh::Device::kCPU, {B, N, H, D});
  lh::Context ctx;
  lh::forward(cfg, x[0], x[1], x[2], out, ctx);
  if (ctx.indices().size() != static_cast<std::size_t>(B * H * plan.S)) {
    std::fprintf(stderr, "FAIL: %zu selected indices, expected B*H*S\n", ctx.indices().size());
    return 1;
  }
  lh::Tensor grad[3];
  for (lh::Tensor& g : grad)
    g = lh::Tensor::empty(lh::DType::kFloat64, lh::Device::kCPU, {B, N, H, D});
  lh::backward(ctx, dout, grad[0], grad[1], grad[2]);

  const double analytic = dot(grad[0], dir[0]) + dot(grad[1], dir[1]) + dot(grad[2], dir[2]);
  const double h = 1e-5;
  const double numeric =
      (objective(cfg, x, dir, h, dout) - objective(cfg, x, dir, -h, dout)) / (2 * h);
  const double rel = std::fabs(analytic - numeric) / std::fmax(std::fabs(numeric), 1e-30);
  std::printf("directional derivative: backward %.12g, central difference %.12g, rel %.1e\n",
              analytic, numeric, rel);
  if (!(rel < 1e-6)) {
    std::fprintf(stderr, "FAIL: backward disagrees with the central difference\n");
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
