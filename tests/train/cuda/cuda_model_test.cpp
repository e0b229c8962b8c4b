// The whole CUDA model against the CPU trainer's: initial weights, loss and every gradient in
// fp32 against Model<double>, 20 AdamW steps in fp32 against Model<float> + AdamW<float>, dense
// and Lighthouse layers, tied and untied heads; and its own guarantees: bitwise determinism in
// bf16, recompute modes equal to keeping everything, evaluate() equal to forward(), checkpoint
// round trips that resume bit for bit, out-of-memory errors that leave a usable model, and the
// timing and memory counters. With packed documents (pack_documents): the fp32 loss and gradients
// against Model<double>, attention kept within documents, bitwise determinism in bf16 and the
// recompute modes' equality.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gpu_test_support.hpp"
#include "lighthouse/error.hpp"
#include "support/require_gpu.hpp"
#include "train/attention_backend.hpp"
#include "train/cuda/cuda_model.hpp"
#include "train/cuda/device_memory.hpp"
#include "train/layers.hpp"
#include "train/model.hpp"
#include "train/optimizer.hpp"

namespace lhtest::gpu {
namespace {

using lighthouse::Config;
using lighthouse::InvalidArgument;
using lighthouse::testing::GpuTest;
using lighthouse::train::AdamWConfig;
using lighthouse::train::CudaModelOptions;
using lighthouse::train::kSeparator;
using lighthouse::train::Model;
using lighthouse::train::ModelConfig;
using lighthouse::train::OutOfDeviceMemory;
using lighthouse::train::Precision;
using lighthouse::train::Recompute;
using lighthouse::train::cuda::CudaModel;

class TrainCudaModel : public GpuTest {};

ModelConfig tiny(bool tied = true) {
  ModelConfig c;
  c.dim = 64;
  c.heads = 2;
  c.layers = 2;
  c.hidden = 64;
  c.tied = tied;
  c.init_std = 0.1;  // gradients of every layer well above rounding noise
  return c;
}

// Layer 0 Lighthouse (2 levels, pool 4, topk 128: S = 256 + 512 = 768 of 1024 tokens), layer 1
// dense; or both dense.
//
// Comparisons across precisions or devices run Lighthouse on kComplete = 512 tokens, where the
// 128 coarse blocks are all selected. The selection is a discontinuous function of the scores:
// on 1024 tokens (a real choice of 128 of 256 blocks) this tiny model's pooled norms lie so close
// together that float32 rounding swaps blocks. Measured on the CPU alone, Model<float> against
// Model<double> on the same weights swaps in 21 of 32 (seed, batch, selection mode) cases, moving
// the loss by up to 8e-4 relative; on 512 tokens all 32 agree to 5e-9. The GPU's selection against
// the CPU's on well-separated scores is the library's test (tests/cuda/matches_cpu_test.cpp); here
// the point is the model around it.
constexpr std::int64_t kComplete = 512;

std::vector<Config> attention(bool lighthouse) {
  Config sparse;
  sparse.levels = 2;
  sparse.pool = 4;
  sparse.topk = 128;
  return lighthouse ? lighthouse::train::layer_attention(2, sparse, {1})
                    : lighthouse::train::all_dense(2);
}

CudaModelOptions options(Precision precision, Recompute recompute = Recompute::kNone) {
  CudaModelOptions o;
  o.precision = precision;
  o.recompute = recompute;
  return o;
}

struct Batch {
  std::vector<std::int32_t> inputs, targets;
  std::int64_t batch, seq;
};

Batch batch_of(std::int64_t batch, std::int64_t seq, std::uint64_t seed) {
  Batch b{random_tokens(batch * seq, 257, seed), random_tokens(batch * seq, 257, seed + 1000),
          batch, seq};
  b.targets[1] = -1;  // an ignored position
  return b;
}

double forward(lighthouse::train::LanguageModel& m, const Batch& b) {
  return m.forward(b.inputs.data(), b.targets.data(), b.batch, b.seq);
}
template <typename T>
double forward(Model<T>& m, const Batch& b) {
  return m.forward(b.inputs.data(), b.targets.data(), b.batch, b.seq);
}

template <typename T>
void copy_weights(const CudaModel& from, Model<T>& to) {
  const auto values = from.read_params();
  for (std::size_t i = 0; i < values.size(); ++i) {
    to.params()[i].value.assign(values[i].begin(), values[i].end());
  }
}

TEST_F(TrainCudaModel, InitialWeightsAreTheCpuModels) {
  for (const bool tied : {true, false}) {
    for (const Precision p : {Precision::kBFloat16, Precision::kFloat32}) {
      const auto model = lighthouse::train::make_cuda_model(tiny(tied), 5, {}, options(p));
      const Model<float> cpu(tiny(tied), 5, nullptr);
      const auto values = model->read_params();
      ASSERT_EQ(values.size(), cpu.params().size());
      ASSERT_EQ(model->params().size(), cpu.params().size());
      for (std::size_t i = 0; i < values.size(); ++i) {
        EXPECT_EQ(model->params()[i].name, cpu.params()[i].name);
        EXPECT_EQ(model->params()[i].shape, cpu.params()[i].shape);
        EXPECT_EQ(model->params()[i].decay, cpu.params()[i].decay);
        expect_same_bits(values[i], cpu.params()[i].value, cpu.params()[i].name);
      }
      EXPECT_EQ(model->device(), lighthouse::Device::kCUDA);
    }
  }
}

// One forward and backward of `b` on both models (same weights): the losses to 1e-5 relative and
// every parameter's gradient to 1e-5 normalised error. Returns the GPU's loss.
double expect_loss_and_gradients_match(CudaModel& gpu, Model<double>& cpu, const Batch& b) {
  gpu.zero_grad();
  cpu.zero_grad();
  const double loss_gpu = forward(gpu, b), loss_cpu = forward(cpu, b);
  EXPECT_NEAR(loss_gpu, loss_cpu, 1e-5 * loss_cpu);
  gpu.backward(1.0);
  cpu.backward(1.0);
  const auto grads = gpu.read_grads();
  for (std::size_t i = 0; i < grads.size(); ++i) {
    expect_close(std::vector<double>(grads[i].begin(), grads[i].end()), cpu.params()[i].grad, 1e-5,
                 "grad " + cpu.params()[i].name);
  }
  return loss_gpu;
}

// fp32 on the GPU against the CPU model in float64 on the same weights: the loss and every
// parameter's gradient.
TEST_F(TrainCudaModel, Float32GradientsMatchCpuFloat64) {
  for (const bool lighthouse : {false, true}) {
    for (const bool tied : {true, false}) {
      SCOPED_TRACE(std::string(lighthouse ? "lighthouse" : "dense") + (tied ? " tied" : " untied"));
      CudaModel gpu(tiny(tied), 7, {}, options(Precision::kFloat32));
      Model<double> cpu(tiny(tied), 7, lighthouse::train::make_cpu_attention(1));
      copy_weights(gpu, cpu);
      gpu.set_attention(attention(lighthouse));
      cpu.set_attention(attention(lighthouse));
      const Batch b = lighthouse ? batch_of(1, kComplete, 1) : batch_of(2, 64, 1);
      expect_loss_and_gradients_match(gpu, cpu, b);
    }
  }
}

// Twenty steps of two accumulated micro-batches, clipping at 1: fp32 on the GPU against the CPU
// trainer's float32 model and optimizer, step for step.
TEST_F(TrainCudaModel, TwentyFloat32StepsMatchCpuTrainer) {
  for (const bool lighthouse : {false, true}) {
    SCOPED_TRACE(lighthouse ? "lighthouse" : "dense");
    const AdamWConfig adamw;
    CudaModel gpu(tiny(), 11, adamw, options(Precision::kFloat32));
    Model<float> cpu(tiny(), 11, lighthouse::train::make_cpu_attention(1));
    lighthouse::train::AdamW<float> opt(adamw, cpu.params());
    gpu.set_attention(attention(lighthouse));
    cpu.set_attention(attention(lighthouse));
    const double lr = 3e-3, clip = 1.0;
    for (int step = 0; step < 20; ++step) {
      gpu.zero_grad();
      cpu.zero_grad();
      double loss_gpu = 0, loss_cpu = 0;
      for (int micro = 0; micro < 2; ++micro) {
        const Batch b = lighthouse ? batch_of(1, kComplete, 100 + 2 * step + micro)
                                   : batch_of(2, 64, 100 + 2 * step + micro);
        loss_gpu += 0.5 * forward(gpu, b);
        gpu.backward(0.5);
        loss_cpu += 0.5 * forward(cpu, b);
        cpu.backward(0.5);
      }
      const double norm_gpu = gpu.optimizer_step(lr, clip);
      const double norm_cpu = lighthouse::train::clip_grad_norm<float>(cpu.params(), clip);
      opt.step(cpu.params(), lr);
      EXPECT_NEAR(loss_gpu, loss_cpu, 1e-4 * loss_cpu) << "step " << step;
      EXPECT_NEAR(norm_gpu, norm_cpu, 1e-3 * norm_cpu) << "step " << step;
      std::printf("  step %2d loss gpu %.7f cpu %.7f  norm gpu %.5f cpu %.5f\n", step, loss_gpu,
                  loss_cpu, norm_gpu, norm_cpu);
    }
  }
}

// One training run: per-step losses, the first step's gradients, the final weights and moments.
struct TrainRun {
  std::vector<double> losses;
  std::vector<std::vector<float>> first_grads, weights, m, v;
};

// `make` draws each micro-batch from a seed; by default batch_of(2, 1024, seed).
TrainRun train(CudaModel& model, int steps, std::uint64_t data_seed,
               const std::function<Batch(std::uint64_t)>& make = {}) {
  TrainRun run;
  model.set_attention(attention(true));
  for (int step = 0; step < steps; ++step) {
    model.zero_grad();
    double loss = 0;
    for (int micro = 0; micro < 2; ++micro) {
      const std::uint64_t seed = data_seed + 2 * step + micro;
      loss += forward(model, make ? make(seed) : batch_of(2, 1024, seed));
      model.backward(0.5);
    }
    if (step == 0) run.first_grads = model.read_grads();
    model.optimizer_step(1e-2, 1.0);
    run.losses.push_back(loss);
  }
  run.weights = model.read_params();
  const auto state = model.read_optimizer();
  run.m = state.m;
  run.v = state.v;
  return run;
}

void expect_same_run(const TrainRun& a, const TrainRun& b, const std::string& what) {
  ASSERT_EQ(a.losses.size(), b.losses.size());
  for (std::size_t i = 0; i < a.losses.size(); ++i) {
    EXPECT_EQ(a.losses[i], b.losses[i]) << what << ": loss of step " << i;
  }
  for (std::size_t i = 0; i < a.weights.size(); ++i) {
    expect_same_bits(a.first_grads[i], b.first_grads[i],
                     what + ": first gradient " + std::to_string(i));
    expect_same_bits(a.weights[i], b.weights[i], what + ": weight " + std::to_string(i));
    expect_same_bits(a.m[i], b.m[i], what + ": m " + std::to_string(i));
    expect_same_bits(a.v[i], b.v[i], what + ": v " + std::to_string(i));
  }
}

TEST_F(TrainCudaModel, Bfloat16RunsAreBitwiseReproducible) {
  CudaModel a(tiny(), 3, {}, options(Precision::kBFloat16));
  CudaModel b(tiny(), 3, {}, options(Precision::kBFloat16));
  const TrainRun ra = train(a, 5, 50), rb = train(b, 5, 50);
  expect_same_run(ra, rb, "two bf16 runs");
}

TEST_F(TrainCudaModel, RecomputeModesGiveTheSameBits) {
  for (const Precision p : {Precision::kBFloat16, Precision::kFloat32}) {
    CudaModel keep(tiny(), 4, {}, options(p, Recompute::kNone));
    const TrainRun base = train(keep, 3, 70);
    for (const Recompute r : {Recompute::kAttention, Recompute::kLayer}) {
      CudaModel model(tiny(), 4, {}, options(p, r));
      expect_same_run(base, train(model, 3, 70),
                      std::string(p == Precision::kFloat32 ? "fp32" : "bf16") + " recompute " +
                          (r == Recompute::kLayer ? "layer" : "attention"));
      // Less is kept for the backward pass.
      EXPECT_LT(model.activation_bytes(2, 1024), keep.activation_bytes(2, 1024));
    }
  }
}

// ---- packed documents (ModelConfig::pack_documents)
// ----------------------------------------------

ModelConfig packed(bool pack = true, bool tied = true) {
  ModelConfig c = tiny(tied);
  c.pack_documents = pack;
  return c;
}

// Tokens below the separator, with separators at `separators` (flattened positions): each ends a
// document, as does each row's end.
Batch documents_batch(std::int64_t batch, std::int64_t seq, std::uint64_t seed,
                      const std::vector<std::int64_t>& separators) {
  Batch b{random_tokens(batch * seq, 256, seed), random_tokens(batch * seq, 257, seed + 1000),
          batch, seq};
  for (const std::int64_t p : separators) b.inputs[static_cast<std::size_t>(p)] = kSeparator;
  b.targets[1] = -1;  // an ignored position
  return b;
}

// Three rows of kComplete tokens. Row 0: documents of 1, 100, 1, 299 and 111 tokens (two of one
// token: cuDNN's s = 1 exception). Row 1: one document that crosses nothing, the whole row, so the
// Lighthouse layer runs Lighthouse on it (every block selected); shorter documents run its dense
// exception (docs/SPEC.md, "Any length"). Row 2: two of 256, the second ending with a separator
// at the row's end (one document, not an empty one after it).
Batch complete_documents(std::uint64_t seed) {
  const std::int64_t n = kComplete;
  return documents_batch(3, n, seed, {0, 100, 101, 400, 2 * n + 255, 2 * n + n - 1});
}

// Two rows of 1024 tokens, where Lighthouse selects: row 0 holds documents of 1, 700 (128 of its
// 175 blocks), 200 and 123 tokens (the dense exception); row 1 one document of 1024.
Batch selecting_documents(std::uint64_t seed) {
  return documents_batch(2, 1024, seed, {0, 700, 900});
}

// fp32 on the GPU against the CPU model in float64 on the same weights, both packing documents:
// the loss and every gradient, with every layer dense and with a Lighthouse layer.
TEST_F(TrainCudaModel, PackDocumentsFloat32GradientsMatchCpuFloat64) {
  for (const bool lighthouse : {false, true}) {
    for (const bool tied : {true, false}) {
      SCOPED_TRACE(std::string(lighthouse ? "lighthouse" : "dense") + (tied ? " tied" : " untied"));
      CudaModel gpu(packed(true, tied), 7, {}, options(Precision::kFloat32));
      Model<double> cpu(packed(true, tied), 7, lighthouse::train::make_cpu_attention(1));
      copy_weights(gpu, cpu);
      gpu.set_attention(attention(lighthouse));
      cpu.set_attention(attention(lighthouse));
      const Batch b = complete_documents(1);
      const double loss_gpu = expect_loss_and_gradients_match(gpu, cpu, b);
      // And evaluate() packs the same documents.
      EXPECT_EQ(gpu.evaluate(b.inputs.data(), b.targets.data(), b.batch, b.seq, nullptr), loss_gpu);
    }
  }
}

// Packing is not a no-op: with it a document's logits ignore the previous document's content
// (the same up to rounding; without it they change), and the loss of the same batch differs.
TEST_F(TrainCudaModel, PackDocumentsKeepAttentionWithinDocuments) {
  constexpr std::int64_t kBoundary = 300;  // row 0: document A [0, 300), then B [300, 512)
  for (const Precision p : {Precision::kFloat32, Precision::kBFloat16}) {
    std::vector<double> losses;
    for (const bool pack : {true, false}) {
      SCOPED_TRACE(std::string(p == Precision::kFloat32 ? "fp32" : "bf16") +
                   (pack ? " packed" : " not packed"));
      CudaModel model(packed(pack), 5, {}, options(p));
      model.set_attention(attention(true));
      Batch b = documents_batch(2, kComplete, 3, {kBoundary - 1});
      std::vector<std::int64_t> rows;
      for (std::int64_t r = kBoundary; r < kComplete; ++r) rows.push_back(r);
      std::vector<float> before(rows.size() * 257), after(before.size());
      losses.push_back(forward(model, b));
      model.logits_rows(rows, before.data());
      const std::vector<std::int32_t> fresh = random_tokens(kBoundary - 1, 256, 99);
      std::copy(fresh.begin(), fresh.end(), b.inputs.begin());  // A's content, not its length
      forward(model, b);
      model.logits_rows(rows, after.data());
      double worst = 0;
      for (std::size_t i = 0; i < before.size(); ++i) {
        worst = std::max(worst, static_cast<double>(std::abs(before[i] - after[i])));
      }
      std::printf("  %s, %s: B's logits moved by at most %.3g\n",
                  p == Precision::kFloat32 ? "fp32" : "bf16", pack ? "packed" : "not packed",
                  worst);
      if (pack) {
        EXPECT_LE(worst, 1e-6) << "a packed document must not see the one before it";
      } else {
        EXPECT_GT(worst, 1e-4) << "attention should cross the boundary without packing";
      }
    }
    EXPECT_NE(losses[0], losses[1]) << "packing should change the loss of the same batch";
  }
}

TEST_F(TrainCudaModel, PackDocumentsBfloat16RunsAreBitwiseReproducible) {
  CudaModel a(packed(), 3, {}, options(Precision::kBFloat16));
  CudaModel b(packed(), 3, {}, options(Precision::kBFloat16));
  const TrainRun ra = train(a, 4, 50, selecting_documents);
  const TrainRun rb = train(b, 4, 50, selecting_documents);
  expect_same_run(ra, rb, "two packed bf16 runs");
  // Not the unpacked run's bits.
  CudaModel c(packed(false), 3, {}, options(Precision::kBFloat16));
  EXPECT_NE(train(c, 1, 50, selecting_documents).losses[0], ra.losses[0]);
}

TEST_F(TrainCudaModel, PackDocumentsRecomputeModesGiveTheSameBits) {
  const Batch shape = selecting_documents(0);
  const std::vector<std::int32_t> offsets =
      lighthouse::train::document_offsets(shape.inputs.data(), shape.batch, shape.seq);
  for (const Precision p : {Precision::kBFloat16, Precision::kFloat32}) {
    CudaModel keep(packed(), 4, {}, options(p, Recompute::kNone));
    (void)keep.take_peak_memory();
    const TrainRun base = train(keep, 3, 70, selecting_documents);
    const auto keep_peak = static_cast<double>(keep.take_peak_memory());
    const auto planned =
        static_cast<double>(keep.parameter_bytes() + keep.activation_bytes(2, 1024, true, offsets));
    std::printf("  %s recompute none: planned %.1f MiB, peak %.1f MiB\n",
                p == Precision::kFloat32 ? "fp32" : "bf16", planned / (1 << 20),
                keep_peak / (1 << 20));
    for (const Recompute r : {Recompute::kAttention, Recompute::kLayer}) {
      CudaModel model(packed(), 4, {}, options(p, r));
      expect_same_run(base, train(model, 3, 70, selecting_documents),
                      std::string(p == Precision::kFloat32 ? "fp32" : "bf16") +
                          " packed, recompute " + (r == Recompute::kLayer ? "layer" : "attention"));
      EXPECT_LT(model.activation_bytes(2, 1024, true, offsets),
                keep.activation_bytes(2, 1024, true, offsets));
    }
  }
}

TEST_F(TrainCudaModel, EvaluateEqualsForwardAndLogitsMatchCpu) {
  for (const Precision p : {Precision::kFloat32, Precision::kBFloat16}) {
    CudaModel gpu(tiny(), 9, {}, options(p));
    gpu.set_attention(attention(true));
    const Batch b = batch_of(2, kComplete, 5);
    const double loss = forward(gpu, b);
    std::vector<double> token_losses(b.inputs.size(), -1.0);
    const double eval =
        gpu.evaluate(b.inputs.data(), b.targets.data(), b.batch, b.seq, token_losses.data());
    EXPECT_EQ(loss, eval) << "evaluate runs the same kernels on the same inputs";
    EXPECT_EQ(token_losses[1], 0.0) << "ignored position";
    // Logits of a few rows against the CPU model in float64 on the same weights.
    if (p == Precision::kFloat32) {
      Model<double> cpu(tiny(), 9, lighthouse::train::make_cpu_attention(1));
      copy_weights(gpu, cpu);
      cpu.set_attention(attention(true));
      EXPECT_NEAR(forward(cpu, b), eval, 1e-5 * eval);
      const std::vector<std::int64_t> rows = {0, 5, kComplete - 1, kComplete, 2 * kComplete - 1};
      std::vector<float> got(rows.size() * 257);
      gpu.logits_rows(rows, got.data());
      std::vector<double> got_d(got.begin(), got.end()), want;
      for (std::size_t i = 0; i < rows.size(); ++i) {
        const std::int64_t r = rows[i];
        want.insert(want.end(), cpu.logits() + r * 257, cpu.logits() + (r + 1) * 257);
        const auto t = static_cast<std::size_t>(r);
        const double from_logits = b.targets[t] < 0 ? 0.0
                                                    : lighthouse::train::token_loss(
                                                          got.data() + i * 257, 257, b.targets[t]);
        EXPECT_NEAR(token_losses[t], from_logits, 1e-5) << "row " << r;
      }
      expect_close(got_d, want, 1e-5, "logits rows");
    }
    EXPECT_THROW(gpu.backward(1.0), lighthouse::Error)
        << "evaluate() keeps nothing to differentiate";
  }
}

// Save weights and optimizer state after three steps; a second model loaded from them continues
// with the same bits as the first.
TEST_F(TrainCudaModel, CheckpointRoundTripResumesBitForBit) {
  CudaModel a(tiny(false), 1, {}, options(Precision::kBFloat16));
  train(a, 3, 200);
  CudaModel b(tiny(false), 2, {}, options(Precision::kBFloat16));
  b.write_params(a.read_params());
  b.write_optimizer(a.read_optimizer());
  expect_same_run(train(a, 2, 300), train(b, 2, 300), "resumed");
}

TEST_F(TrainCudaModel, TimesAndPeakMemory) {
  CudaModel model(tiny(), 1, {}, options(Precision::kBFloat16));
  (void)model.take_times();
  (void)model.take_peak_memory();
  train(model, 1, 1);
  const auto t = model.take_times();
  EXPECT_GT(t.matmul, 0);
  EXPECT_GT(t.dense_attention, 0);
  EXPECT_GT(t.lighthouse_attention, 0);
  EXPECT_GT(t.other, 0);
  EXPECT_EQ(model.take_times().total(), 0.0) << "take_times resets";
  const std::int64_t peak = model.take_peak_memory();
  EXPECT_GE(peak, model.parameter_bytes() + model.activation_bytes(2, 1024) / 2);
  const std::int64_t now = model.take_peak_memory();
  EXPECT_LE(now, peak);
  EXPECT_GE(now, model.parameter_bytes());
}

TEST_F(TrainCudaModel, OutOfMemoryNamesTheNeedAndLeavesAUsableModel) {
  // Weights, gradients and moments of ~50 billion parameters fit no GPU; the host model is never
  // drawn (it would need 400 GB of host memory).
  ModelConfig huge;
  huge.dim = 8192;
  huge.heads = 64;
  huge.layers = 64;
  try {
    CudaModel model(huge, 1, {}, options(Precision::kBFloat16));
    ADD_FAILURE() << "expected OutOfDeviceMemory";
  } catch (const OutOfDeviceMemory& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("parameters"), std::string::npos) << what;
    EXPECT_NE(what.find("bytes"), std::string::npos) << what;
    EXPECT_NE(what.find("free"), std::string::npos) << what;
    std::printf("  %s\n", what.c_str());
  }
  // Activations of 64M tokens do not fit either; the model stays usable for a batch that does.
  CudaModel model(tiny(), 6, {}, options(Precision::kBFloat16));
  CudaModel fresh(tiny(), 6, {}, options(Precision::kBFloat16));
  const Batch big = batch_of(16, std::int64_t{1} << 22, 1);
  try {
    forward(model, big);
    ADD_FAILURE() << "expected OutOfDeviceMemory";
  } catch (const OutOfDeviceMemory& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("activations of batch 16 x seq 4194304"), std::string::npos) << what;
    EXPECT_NE(what.find("--recompute layer"), std::string::npos) << what;
    EXPECT_NE(what.find("--batch"), std::string::npos) << what;
    std::printf("  %s\n", what.c_str());
  }
  EXPECT_THROW(model.backward(1.0), lighthouse::Error);
  const Batch small = batch_of(2, 64, 3);
  EXPECT_EQ(forward(model, small), forward(fresh, small));
  model.backward(1.0);
  // And one allocation larger than the device, through the helper every buffer uses.
  std::size_t free = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free, &total), cudaSuccess);
  const std::size_t too_much = (total + (std::size_t{1} << 30)) / 256 * 256;
  try {
    lighthouse::train::cuda::DeviceArray array("a test buffer", too_much, nullptr);
    ADD_FAILURE() << "expected OutOfDeviceMemory";
  } catch (const OutOfDeviceMemory& e) {
    EXPECT_NE(
        std::string(e.what()).find("a test buffer: needs " + std::to_string(too_much) + " bytes"),
        std::string::npos)
        << e.what();
  }
}

// The memory target: the 30-layer paper preset trains one step at 98304 tokens with
// --recompute layer in well under 80 GB (docs/DESIGN.md has the arithmetic: ~21 GiB). cuDNN's
// fast dense backward: its deterministic one would need ~145 GiB at this length.
TEST_F(TrainCudaModel, PaperPresetTrainsAt98KWithRecomputeLayer) {
  ModelConfig paper;
  paper.layers = 30;
  paper.dim = 1024;
  paper.heads = 8;
  paper.hidden = 1536;
  CudaModelOptions o = options(Precision::kBFloat16, Recompute::kLayer);
  o.deterministic = false;
  CudaModel model(paper, 1, {}, o);
  Config sparse;
  sparse.levels = 3;
  sparse.pool = 4;
  sparse.topk = 1536;
  model.set_attention(lighthouse::train::layer_attention(30, sparse, {0, 1, 28, 29}));
  const std::int64_t seq = 98304;
  const double planned =
      static_cast<double>(model.parameter_bytes() + model.activation_bytes(1, seq));
  EXPECT_LT(planned, 24.0 * (1u << 30));
  (void)model.take_peak_memory();
  model.zero_grad();
  const double loss = forward(model, batch_of(1, seq, 1));
  model.backward(1.0);
  const double norm = model.optimizer_step(1e-4, 1.0);
  const auto peak = static_cast<double>(model.take_peak_memory());
  std::printf("  paper preset at 98K: loss %.4f, grad norm %.4f, planned %.2f GiB, peak %.2f GiB\n",
              loss, norm, planned / (1u << 30), peak / (1u << 30));
  EXPECT_TRUE(std::isfinite(loss) && std::isfinite(norm));
  EXPECT_NEAR(loss, std::log(257.0), 1.0) << "an untrained model predicts about uniformly";
  EXPECT_LT(peak, 70.0 * (1u << 30)) << "must fit an 80 GB H100 with room to spare";
}

TEST_F(TrainCudaModel, BadInputIsRejectedWithTheParameterNamed) {
  CudaModel model(tiny(), 1, {}, options(Precision::kBFloat16));
  Batch b = batch_of(1, 64, 1);
  b.inputs[3] = 300;
  try {
    forward(model, b);
    ADD_FAILURE() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.param(), "inputs[3]");
  }
  b = batch_of(1, 64, 1);
  b.targets[4] = 257;
  EXPECT_THROW(forward(model, b), InvalidArgument);
  EXPECT_THROW(model.backward(1.0), lighthouse::Error);
  EXPECT_THROW(model.set_attention(lighthouse::train::all_dense(3)), InvalidArgument);
  auto values = model.read_params();
  values[2].pop_back();
  try {
    model.write_params(values);
    ADD_FAILURE() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.param(), "params layers.0.wqkv");
  }
  ModelConfig odd = tiny();
  odd.dim = 24;  // head_dim 12: not a multiple of 8 for cuDNN
  EXPECT_THROW(CudaModel(odd, 1, {}, options(Precision::kBFloat16)), InvalidArgument);
  odd = tiny();
  odd.hidden = 60;
  EXPECT_THROW(CudaModel(odd, 1, {}, options(Precision::kBFloat16)), InvalidArgument);
  // A sequence shorter than one coarsest tile is not refused: the library pads it (docs/SPEC.md,
  // "Any length").
  model.set_attention(attention(true));
  EXPECT_TRUE(std::isfinite(forward(model, batch_of(1, 64, 1))));
}

}  // namespace
}  // namespace lhtest::gpu
