// The two-stage training loop: stage 1 (stage1_steps) with Lighthouse attention in every layer
// except the dense ones, stage 2 (stage2_steps) with dense attention everywhere, on the same
// weights, AdamW state and learning-rate schedule (the schedule spans both stages). Evaluation
// on held-out data always uses dense attention (the model that ships is dense); in stage 1 the
// held-out loss under the training attention is reported too.
//
// The trainer talks to a LanguageModel only (language_model.hpp): the same loop trains the CPU
// model and the CUDA model.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "lighthouse/config.hpp"
#include "train/data.hpp"
#include "train/language_model.hpp"
#include "train/model.hpp"
#include "train/optimizer.hpp"

namespace lighthouse::train {

struct TrainConfig {
  ModelConfig model;
  std::int64_t seq = 1024, batch = 1, accum = 1;  // tokens per step = seq * batch * accum
  std::int64_t stage1_steps = 0, stage2_steps = 100;
  Config lighthouse;                             // stage-1 attention of the non-dense layers
  std::optional<std::vector<int>> dense_layers;  // empty optional: default_dense_layers()
  Schedule schedule;                             // total is set from the stages
  AdamWConfig adamw;
  double grad_clip = 1.0;  // <= 0: no clipping
  std::uint64_t seed = 1;
  std::int64_t eval_batches = 2;
  int threads = 0;  // attention worker threads, 0 = all (the CLI sets OpenMP's count too)
  // Context parallelism: ranks per sequence (run.hpp's RunOptions::comm; 0 = none). Not part of
  // a checkpoint: a run saved with one W resumes with any other.
  int cp = 0;
  // Data parallelism: D groups of cp ranks (run.hpp's RunOptions::world; 1 = none; needs cp >= 1).
  // A D-group run is one group's run with D times the batch: every micro-batch is the D * batch
  // sequences that run reads, group g training on the sequences g, g + D, g + 2D, ... of it
  // (Packer::next's stride), and the gradients summed over all D * cp ranks. Like cp, not part of
  // a checkpoint: the data position is that of the D * batch run.
  int dp = 1;

  // Throws InvalidArgument naming the field; also checks that the stage-1 attention fits seq,
  // and with cp >= 1 the rules of context parallelism for every layer of both stages (seq
  // divisible by 2 cp, whole tiles per chunk, heads by cp; the original selection, the norm
  // scorer and kv_heads = heads, which the library's CP supports so far).
  void validate() const;
  void validate_context_parallel() const;
};

struct StepResult {
  std::int64_t step = 0;  // 1-based count of optimizer steps done
  int stage = 1;
  double loss = 0;  // mean training loss over the step's micro-batches
  double grad_norm = 0, lr = 0;
  double seconds = 0;  // wall-clock of the step
  std::int64_t tokens = 0;
};

struct EvalResult {
  double dense_loss = 0;
  std::optional<double> train_attention_loss;  // stage 1 only
  // Mean dense loss on the long-range tokens (recall_positions: the answers to queries whose
  // fact is in the context) and how many there were; empty when the held-out sequences hold
  // none (other data than the built-in corpus).
  std::optional<double> recall_loss;
  std::int64_t recall_tokens = 0;
  // The same over the answers' first digits only (recall_positions' first_digits): the key
  // match the passkey probe asks for.
  std::optional<double> recall_first_loss;
  // The first-digit loss by how far back the key was last written (kRecallDistanceBounds:
  // < 128, < 1K, < 8K, >= 8K tokens), with the count of each; empty where a class has none.
  // Long-range retrieval shows in the far classes; a model that only copies nearby keys has a low
  // loss in the first class and ln 9 in the others.
  std::array<std::optional<double>, kRecallDistanceClasses> recall_first_by_distance;
  std::array<std::int64_t, kRecallDistanceClasses> recall_first_by_distance_tokens{};
};

class Trainer {
 public:
  // Trains `model`, whose config must be config.model (InvalidArgument "model" otherwise).
  Trainer(const TrainConfig& config, const TokenStream* train, const TokenStream* heldout,
          std::unique_ptr<LanguageModel> model);
  // The CPU model (make_cpu_model) from config.seed, attention through `backend`.
  Trainer(const TrainConfig& config, const TokenStream* train, const TokenStream* heldout,
          std::shared_ptr<AttentionBackend> backend);

  bool done() const { return step_ >= total_steps(); }
  std::int64_t total_steps() const { return config_.stage1_steps + config_.stage2_steps; }
  int stage() const { return step_ < config_.stage1_steps ? 1 : 2; }
  std::int64_t step_count() const { return step_; }
  StepResult step();
  EvalResult evaluate();
  LanguageModel& model() { return *model_; }
  const TrainConfig& config() const { return config_; }

  // Checkpoint state besides the weights and the optimizer (see checkpoint.hpp).
  const Packer& packer() const { return packer_; }
  const TokenStream& heldout() const { return *heldout_; }
  // The trainer's random stream: the leak probe draws its replacement bytes from it, so a
  // resumed run draws the same ones.
  Rng& rng() { return rng_; }
  // Data parallelism (TrainConfig::dp = D groups): this trainer is group `group`'s, and `world`
  // (D * cp ranks, in groups of cp consecutive ranks) sums the gradients (the model's
  // set_data_parallel) and averages the groups' losses. Every rank of the world calls it.
  void set_data_parallel(int group, Communicator* world);
  // Continues after `step` optimizer steps with the training data at `data_position`.
  void restore(std::int64_t step, std::uint64_t data_position);
  // The stage-1 (training) attention of every layer; dense when stage1_steps == 0.
  const std::vector<Config>& stage1_attention() const { return stage1_attention_; }

 private:
  struct HeldoutLoss {
    double mean = 0;        // over every token
    double recall_sum = 0;  // summed over the long-range tokens
    std::int64_t recall_tokens = 0;
    double first_sum = 0;  // summed over the answers' first digits
    std::int64_t first_tokens = 0;
    // The same by distance class (recall_distance_class).
    std::array<double, kRecallDistanceClasses> class_sum{};
    std::array<std::int64_t, kRecallDistanceClasses> class_tokens{};
  };
  HeldoutLoss heldout_loss();
  double mean_over_groups(double loss);
  void set_stage_attention();

  TrainConfig config_;
  std::unique_ptr<LanguageModel> model_;
  const TokenStream* heldout_;
  Packer packer_;
  std::int64_t step_ = 0;
  Rng rng_;
  std::vector<Config> stage1_attention_;
  int group_ = 0;                  // data parallelism: this trainer's group of config_.dp
  Communicator* world_ = nullptr;  // ... and the communicator of all of them
  std::vector<std::int32_t> inputs_, targets_;
  std::vector<double> token_losses_;
};

}  // namespace lighthouse::train
