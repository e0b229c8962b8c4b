// Training configurations small enough for unit tests, shared by the trainer and checkpoint
// tests: one core, a few steps, seconds at most.
#pragma once

#include "train/trainer.hpp"

namespace lhtest {

// Dense only (stage 2), a 32-wide model on 32-token sequences: overfits a sentence in 150 steps.
inline lighthouse::train::TrainConfig tiny_config() {
  lighthouse::train::TrainConfig c;
  c.model.dim = 32;
  c.model.heads = 2;
  c.model.layers = 2;
  c.seq = 32;
  c.batch = 2;
  c.stage1_steps = 0;
  c.stage2_steps = 150;
  c.schedule.lr = 1e-2;
  c.schedule.warmup = 10;
  c.eval_batches = 1;
  c.threads = 1;
  return c;
}

// Three Lighthouse steps (L = 2, p = 2, K = 128; topk 128 at pool 2 needs seq >= 256), then two
// dense ones, each of two accumulated micro-batches: crosses the stage switch.
inline lighthouse::train::TrainConfig two_stage_config() {
  lighthouse::train::TrainConfig c = tiny_config();
  c.model.dim = 16;
  c.seq = 256;
  c.batch = 1;
  c.accum = 2;
  c.stage1_steps = 3;
  c.stage2_steps = 2;
  c.lighthouse.levels = 2;
  c.lighthouse.pool = 2;
  c.lighthouse.topk = 128;
  return c;
}

}  // namespace lhtest
