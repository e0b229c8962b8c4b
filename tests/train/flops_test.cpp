// FLOP counts from shapes: the matmul count equals what matmul() measured over a real training
// step; dense layers count the same both ways; Lighthouse layers count their gathered length S;
// parameter_count equals the model's.
#include <gtest/gtest.h>

#include <vector>

#include "lighthouse/plan.hpp"
#include "tiny_configs.hpp"
#include "train/flops.hpp"
#include "train/matmul.hpp"
#include "train/trainer.hpp"

namespace {

using namespace lighthouse::train;

TEST(Flops, MatmulCountEqualsWhatTheTrainingStepMultiplied) {
  for (bool tied : {true, false}) {
    TrainConfig c = lhtest::two_stage_config();  // accum 2, stage 1 Lighthouse
    c.model.tied = tied;
    const TokenStream data = generate_corpus(3000, 2, 500);
    Trainer trainer(c, &data, &data, make_cpu_attention(1));
    const std::vector<lighthouse::Config> stage1 = trainer.stage1_attention();
    reset_matmul_stats();
    trainer.step();
    const StepFlops f = training_flops(c.model, stage1, c.batch, c.seq);
    EXPECT_EQ(matmul_stats().flops, f.matmul * static_cast<double>(c.accum)) << tied;
    EXPECT_EQ(trainer.model().parameter_count(), parameter_count(c.model)) << tied;
  }
}

TEST(Flops, AttentionCountsDenseAtNAndLighthouseAtS) {
  ModelConfig m;
  m.dim = 64;
  m.heads = 2;
  m.layers = 2;
  lighthouse::Config lh;
  lh.levels = 3;
  lh.pool = 4;
  lh.topk = 128;
  const std::int64_t batch = 2, seq = 4096;
  const StepFlops dense = training_flops(m, all_dense(2), batch, seq);
  EXPECT_EQ(dense.attention, dense.attention_dense_equivalent);
  EXPECT_EQ(dense.executed(), dense.dense_equivalent());
  // Causal: forward 2 N^2 D per (batch, head) (half of two N x N x D products), backward 2.5x.
  const double per_layer = 3.5 * 2.0 * seq * seq * m.head_dim() * batch * m.heads;
  EXPECT_DOUBLE_EQ(dense.attention, 2 * per_layer);

  const StepFlops mixed = training_flops(m, layer_attention(2, lh, {1}), batch, seq);
  const lighthouse::Plan plan = lighthouse::make_plan(lh, batch, seq, m.heads, m.head_dim());
  const double s = static_cast<double>(plan.S);
  EXPECT_LT(plan.S, seq);
  EXPECT_DOUBLE_EQ(mixed.attention, per_layer + per_layer * (s / seq) * (s / seq));
  EXPECT_EQ(mixed.attention_dense_equivalent, dense.attention_dense_equivalent);
  EXPECT_EQ(mixed.matmul, dense.matmul);
  EXPECT_LT(mixed.executed(), mixed.dense_equivalent());
  // A config whose padded length would gather >= seq entries is dense attention (any length).
  EXPECT_NO_THROW(training_flops(m, layer_attention(2, lh, {}), batch, 256));
}

}  // namespace
