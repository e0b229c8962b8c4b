// lighthouse_gpu_model_bench: times training steps (forward + backward + AdamW) of the CUDA model
// and says where the time goes. For the GPU script; the trainer's CLI owns `lighthouse train`.
//
//   lighthouse_gpu_model_bench --preset paper --seq 98304 --recompute layer --steps 5
//   lighthouse_gpu_model_bench --preset issue8 --seq 65536 --attention lighthouse
//
// Prints ms/step (CUDA events: the step's span on the GPU, host stalls included) and tok/s, the
// WorkTimes split (dense attention, Lighthouse attention, matmuls, other), peak device memory,
// achieved TFLOP/s and MFU counted two ways (dense-equivalent FLOPs and FLOPs executed), and the
// products' rate against cuBLASLt alone: every product shape of a step replayed on its own
// (fresh buffers, same dtypes and algorithm choice) -- the target is >= 70%.
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda/check.hpp"
#include "lighthouse/error.hpp"
#include "lighthouse/plan.hpp"
#include "train/cuda/cuda_model.hpp"
#include "train/cuda/matmul.hpp"
#include "train/model.hpp"
#include "train/rng.hpp"

namespace {

namespace tr = lighthouse::train;
namespace tc = lighthouse::train::cuda;

struct Preset {
  tr::ModelConfig model;
  std::vector<int> dense_layers;  // kept dense in stage 1
};

// paper: the original's 530M flavour (issue 12): 30 layers, width 1024, 8 x 128 heads, SwiGLU
// 1536, layers 0, 1, 28, 29 dense in stage 1. issue8: the PyTorch reference model, 8
// layers, width 1024, 8 x 128, SwiGLU 2816. tiny: a smoke test.
Preset preset(const std::string& name) {
  Preset p;
  if (name == "paper") {
    p.model.layers = 30;
    p.model.dim = 1024;
    p.model.heads = 8;
    p.model.hidden = 1536;
    p.dense_layers = {0, 1, 28, 29};
  } else if (name == "issue8") {
    p.model.layers = 8;
    p.model.dim = 1024;
    p.model.heads = 8;
    p.model.hidden = 2816;
  } else if (name == "tiny") {
    p.model.layers = 4;
    p.model.dim = 256;
    p.model.heads = 2;
    p.model.hidden = 688;
    p.dense_layers = {3};
  } else {
    throw lighthouse::InvalidArgument("--preset", name, "must be paper, issue8 or tiny");
  }
  return p;
}

// Median of the values (n >= 1).
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Milliseconds one product of this shape takes alone on its own stream (fresh zeroed buffers).
double alone_ms(const tc::MatmulShape& s, cudaStream_t stream) {
  tc::Matmul mm(stream);
  const std::size_t in = lighthouse::dtype_size(s.in), out = lighthouse::dtype_size(s.out);
  const std::int64_t lda = s.ta == tr::Trans::kNo ? s.k : s.m;
  const std::int64_t ldb = s.tb == tr::Trans::kNo ? s.n : s.k;
  tc::DeviceArray a("bench A", static_cast<std::size_t>(s.m * s.k) * in, stream);
  tc::DeviceArray b("bench B", static_cast<std::size_t>(s.k * s.n) * in, stream);
  tc::DeviceArray d("bench D", static_cast<std::size_t>(s.m * s.n) * out, stream);
  for (tc::DeviceArray* x : {&a, &b, &d})
    CUDA_CHECK(cudaMemsetAsync(x->get(), 0, x->bytes(), stream));
  auto run = [&] {
    mm.run(s.ta, s.tb, s.m, s.n, s.k, {a.get(), s.in, lda}, {b.get(), s.in, ldb},
           s.accumulate ? 1.0f : 0.0f, d.get(), d.get(), s.out, s.n);
  };
  for (int i = 0; i < 3; ++i) run();
  cudaEvent_t start = nullptr, stop = nullptr;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  constexpr int kReps = 10;
  CUDA_CHECK(cudaEventRecord(start, stream));
  for (int i = 0; i < kReps; ++i) run();
  CUDA_CHECK(cudaEventRecord(stop, stream));
  CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / kReps;
}

int run(int argc, char** argv) {
  CLI::App app{"Times training steps of the CUDA language model (src/train/cuda)."};
  std::string preset_name = "paper", precision = "bf16", recompute = "layer", attention = "stage1",
              deterministic = "off";
  std::int64_t seq = 98304, batch = 1;
  int steps = 5, warmup = 2, levels = 3, pool = 4, topk = 1536;
  double peak_tflops = 989.4;
  app.add_option("--preset", preset_name, "paper | issue8 | tiny")->capture_default_str();
  app.add_option("--seq", seq, "tokens per sequence")->capture_default_str();
  app.add_option("--batch", batch, "sequences per step")->capture_default_str();
  app.add_option("--steps", steps, "timed steps")->capture_default_str();
  app.add_option("--warmup", warmup, "untimed steps first")->capture_default_str();
  app.add_option("--precision", precision, "bf16 | fp32")->capture_default_str();
  app.add_option("--recompute", recompute, "none | attention | layer")->capture_default_str();
  app.add_option("--attention", attention,
                 "dense (every layer) | lighthouse (every layer) | stage1 (the preset's dense "
                 "layers dense, the rest Lighthouse)")
      ->capture_default_str();
  app.add_option("--levels", levels, "Lighthouse levels")->capture_default_str();
  app.add_option("--pool", pool, "Lighthouse pool")->capture_default_str();
  app.add_option("--topk", topk, "Lighthouse topk")->capture_default_str();
  app.add_option("--deterministic", deterministic,
                 "on: cuDNN's deterministic attention backward (workspace ~ 2 B H S^2 bytes)")
      ->capture_default_str();
  app.add_option("--peak-tflops", peak_tflops, "the GPU's dense bf16 peak, for MFU (H100/H200 SXM)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const Preset p = preset(preset_name);
  tr::CudaModelOptions options;
  options.precision = precision == "fp32" ? tr::Precision::kFloat32 : tr::Precision::kBFloat16;
  options.recompute = recompute == "none"        ? tr::Recompute::kNone
                      : recompute == "attention" ? tr::Recompute::kAttention
                                                 : tr::Recompute::kLayer;
  options.deterministic = deterministic == "on";
  tc::CudaModel model(p.model, 1, {}, options);
  lighthouse::Config sparse;
  sparse.levels = levels;
  sparse.pool = pool;
  sparse.topk = topk;
  const int L = p.model.layers;
  std::vector<lighthouse::Config> per_layer = attention == "dense" ? tr::all_dense(L)
                                              : attention == "lighthouse"
                                                  ? tr::layer_attention(L, sparse, {})
                                                  : tr::layer_attention(L, sparse, p.dense_layers);
  model.set_attention(per_layer);

  std::int64_t params = 0;
  for (const auto& info : model.params()) {
    std::int64_t n = 1;
    for (std::int64_t d : info.shape) n *= d;
    params += n;
  }
  std::printf("preset %s: %d layers, dim %d, heads %d x %d, SwiGLU %d, %.1f M parameters\n",
              preset_name.c_str(), L, p.model.dim, p.model.heads, p.model.head_dim(), p.model.ffn(),
              static_cast<double>(params) * 1e-6);
  std::printf(
      "batch %lld x seq %lld, %s, recompute %s, attention %s (L%d p%d K%d), "
      "deterministic %s\n",
      static_cast<long long>(batch), static_cast<long long>(seq), precision.c_str(),
      recompute.c_str(), attention.c_str(), levels, pool, topk, deterministic.c_str());
  std::printf("activations: %.2f GiB planned, weights and optimizer %.2f GiB\n",
              static_cast<double>(model.activation_bytes(batch, seq)) / (1u << 30),
              static_cast<double>(model.parameter_bytes()) / (1u << 30));

  tr::Rng rng(7);
  std::vector<std::int32_t> inputs(static_cast<std::size_t>(batch * seq)), targets(inputs.size());
  std::vector<double> step_ms;
  tr::WorkTimes sum;
  std::vector<tc::MatmulShape> shapes;
  (void)model.take_peak_memory();
  for (int step = 0; step < warmup + steps; ++step) {
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      inputs[i] = static_cast<std::int32_t>(rng.below(256));
      targets[i] = static_cast<std::int32_t>(rng.below(256));
    }
    (void)model.take_times();
    (void)model.take_matmul_shapes();
    model.zero_grad();
    model.forward(inputs.data(), targets.data(), batch, seq);
    model.backward(1.0);
    model.optimizer_step(1e-4, 1.0);
    const tr::WorkTimes t = model.take_times();
    if (step < warmup) continue;
    step_ms.push_back(t.total() * 1e3);
    sum.dense_attention += t.dense_attention;
    sum.lighthouse_attention += t.lighthouse_attention;
    sum.matmul += t.matmul;
    sum.other += t.other;
    shapes = model.take_matmul_shapes();
  }
  const double peak = static_cast<double>(model.take_peak_memory());
  const double ms = median(step_ms);
  const double tokens = static_cast<double>(batch * seq);
  std::printf(
      "step (forward + backward + AdamW): median %.2f ms over %d steps (min %.2f, max "
      "%.2f), %.0f tok/s\n",
      ms, steps, *std::min_element(step_ms.begin(), step_ms.end()),
      *std::max_element(step_ms.begin(), step_ms.end()), tokens / (ms * 1e-3));
  const double total = sum.total();
  std::printf(
      "split: matmul %.1f%%, dense attention %.1f%%, Lighthouse attention %.1f%%, other "
      "%.1f%%\n",
      100 * sum.matmul / total, 100 * sum.dense_attention / total,
      100 * sum.lighthouse_attention / total, 100 * sum.other / total);
  std::printf("peak device memory: %.2f GiB\n", peak / (1u << 30));

  // FLOPs of one step: the products as run, and attention forward (twice when recomputed) and
  // backward; dense-equivalent counts dense attention in every layer and the products without
  // recomputation (3x the forward's).
  double matmul_flops = 0;
  for (const auto& s : shapes) matmul_flops += s.flops() * static_cast<double>(s.calls);
  const std::int64_t C = p.model.dim, F = p.model.ffn(), Vp = (p.model.vocab + 7) / 8 * 8;
  const double forward_matmul =
      2.0 * tokens * (L * (C * 3.0 * C + C * C + C * 2.0 * F + F * C) + C * Vp);
  const int attention_forwards = options.recompute == tr::Recompute::kNone ? 1 : 2;
  double executed = matmul_flops, dense_equivalent = 3 * forward_matmul;
  for (const auto& c : per_layer) {
    const lighthouse::Plan plan =
        lighthouse::make_plan(c, batch, seq, p.model.heads, p.model.head_dim());
    executed += attention_forwards * plan.attention_fwd_flops() + plan.attention_bwd_flops();
    dense_equivalent += plan.dense_fwd_flops() + plan.dense_bwd_flops();
  }
  const double s_step = ms * 1e-3;
  std::printf("TFLOP/s: executed %.1f (MFU %.1f%%), dense-equivalent %.1f (MFU %.1f%% of %.0f)\n",
              executed / s_step * 1e-12, 100 * executed / s_step * 1e-12 / peak_tflops,
              dense_equivalent / s_step * 1e-12,
              100 * dense_equivalent / s_step * 1e-12 / peak_tflops, peak_tflops);

  // The products of the last step against each shape alone.
  cudaStream_t stream = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const double model_matmul_ms = sum.matmul / steps * 1e3;
  double alone_total = 0;
  std::printf("%-3s %-3s %8s %8s %8s %-9s %5s %10s %9s\n", "ta", "tb", "m", "n", "k", "in->out",
              "calls", "alone ms", "TFLOP/s");
  for (const auto& s : shapes) {
    const double t = alone_ms(s, stream);
    alone_total += t * static_cast<double>(s.calls);
    std::printf("%-3s %-3s %8lld %8lld %8lld %-9s %5lld %10.3f %9.1f\n",
                s.ta == tr::Trans::kYes ? "T" : "N", s.tb == tr::Trans::kYes ? "T" : "N",
                static_cast<long long>(s.m), static_cast<long long>(s.n),
                static_cast<long long>(s.k),
                (std::string(s.in == lighthouse::DType::kBFloat16 ? "bf16" : "fp32") + "->" +
                 (s.out == lighthouse::DType::kBFloat16 ? "bf16" : "fp32"))
                    .c_str(),
                static_cast<long long>(s.calls), t, s.flops() / (t * 1e-3) * 1e-12);
  }
  cudaStreamDestroy(stream);
  std::printf(
      "GEMMs: in the model %.2f ms/step (%.1f TFLOP/s), alone %.2f ms (%.1f TFLOP/s): "
      "%.0f%% of cuBLASLt's rate on the same shapes (target >= 70%%)\n",
      model_matmul_ms, matmul_flops / (model_matmul_ms * 1e-3) * 1e-12, alone_total,
      matmul_flops / (alone_total * 1e-3) * 1e-12, 100 * alone_total / model_matmul_ms);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const lighthouse::InvalidArgument& e) {
    std::fprintf(stderr, "lighthouse_gpu_model_bench: error: %s\n", e.what());
    return 2;
  } catch (const lighthouse::train::OutOfDeviceMemory& e) {
    std::fprintf(stderr, "lighthouse_gpu_model_bench: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lighthouse_gpu_model_bench: error: %s\n", e.what());
    return 1;
  }
}
