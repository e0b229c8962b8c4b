// `lighthouse train --pack-documents` (docs/SPEC.md, "Packed documents"): with the model's
// pack_documents on, attention stays within documents (a document ends with kSeparator), so a
// token's logits do not change, bit for bit, when the previous document's content changes — in
// dense layers and Lighthouse layers alike. Without it they do (the test can fail).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "support/cli_run.hpp"
#include "train/language_model.hpp"
#include "train/model.hpp"
#include "train/rng.hpp"

namespace {

using lighthouse::train::kSeparator;
using lighthouse::train::Model;
using lighthouse::train::ModelConfig;

constexpr std::int64_t kSeq = 1024, kBatch = 2;
constexpr std::int64_t kBoundary = 600;  // row 0: document A [0, 600), then document B

std::vector<std::int32_t> tokens(std::uint64_t seed) {
  lighthouse::train::Rng rng(seed);
  std::vector<std::int32_t> t(static_cast<std::size_t>(kBatch * kSeq));
  for (auto& x : t) x = static_cast<std::int32_t>(rng.below(256));
  t[kBoundary - 1] = kSeparator;  // A ends with the separator
  t[kSeq + 300] = kSeparator;     // row 1 holds two documents too
  return t;
}

// Logits of document B (row 0, positions >= kBoundary) after a forward with `inputs`.
std::vector<float> logits_of_b(Model<float>& model, const std::vector<std::int32_t>& inputs) {
  std::vector<std::int32_t> targets(inputs.size(), 1);
  model.forward(inputs.data(), targets.data(), kBatch, kSeq);
  const int V = model.config().vocab;
  return {model.logits() + kBoundary * V, model.logits() + kSeq * V};
}

double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::abs(a[i] - b[i])));
  return worst;
}

std::vector<std::vector<lighthouse::Config>> attention_mixes() {
  lighthouse::Config sparse;
  sparse.levels = 2;
  sparse.pool = 2;
  sparse.topk = 128;
  sparse.selection = lighthouse::Selection::kCausal;
  lighthouse::Config dense = sparse;
  dense.levels = 1;
  return {{dense, dense}, {sparse, dense}, {sparse, sparse}};
}

TEST(PackDocuments, LaterDocumentIgnoresTheEarlierOnesContent) {
  for (const auto& layers : attention_mixes()) {
    for (bool pack : {true, false}) {
      SCOPED_TRACE(std::string(pack ? "packed" : "not packed") + ", first layer levels " +
                   std::to_string(layers[0].levels));
      ModelConfig config;
      config.dim = 32;
      config.layers = 2;
      config.heads = 2;
      config.pack_documents = pack;
      Model<float> model(config, 7, lighthouse::train::make_cpu_attention(1));
      model.set_attention(layers);
      std::vector<std::int32_t> inputs = tokens(3);
      const std::vector<float> before = logits_of_b(model, inputs);
      lighthouse::train::Rng rng(99);
      for (std::int64_t i = 0; i + 1 < kBoundary; ++i) {  // new content for A, same length
        inputs[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(rng.below(256));
      }
      const std::vector<float> after = logits_of_b(model, inputs);
      const bool same = std::memcmp(before.data(), after.data(), before.size() * 4) == 0;
      if (pack) {
        EXPECT_TRUE(same) << "max difference " << max_difference(before, after);
      } else {
        EXPECT_FALSE(same) << "attention should cross the boundary without --pack-documents";
      }
    }
  }
}

TEST(PackDocuments, TrainCliRunsPacked) {
  lhtest::TempDir dir("lighthouse-pack-test");
  const std::string common =
      "train --device cpu --layers 1 --dim 16 --heads 2 --seq 512 --levels 2 --pool 2 --topk 128 "
      "--stage1-steps 2 --stage2-steps 1 --eval-every 100 --eval-batches 1 --passkey-trials 0 "
      "--corpus-tokens 20k --threads 1 --quiet --pack-documents --metrics " +
      (dir / "m.jsonl");
  const lhtest::CliResult ok = lhtest::run_cli(dir.path(), common);
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(lhtest::read_file(dir / "m.jsonl").find("\"pack_documents\":true"), std::string::npos);
  // The CUDA model packs documents too (TrainerGpu.PackDocumentsRunsOnTheCudaModel, on a GPU).
  // Where it cannot run, the device is what is refused, not the flag.
  if (!lighthouse::train::cuda_model_available()) {
    const lhtest::CliResult cuda = lhtest::run_cli(
        dir.path(), "train --device cuda --pack-documents --stage1-steps 1 --stage2-steps 0");
    EXPECT_EQ(cuda.status, 2) << cuda.err;
    EXPECT_NE(cuda.err.find("--device"), std::string::npos) << cuda.err;
    EXPECT_EQ(cuda.err.find("--pack-documents"), std::string::npos) << cuda.err;
  }
}

}  // namespace
