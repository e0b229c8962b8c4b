#include "train/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include "lighthouse/communicator.hpp"
#include "lighthouse/context_parallel.hpp"
#include "lighthouse/error.hpp"
#include "lighthouse/plan.hpp"

namespace lighthouse::train {

namespace {
std::string s(std::int64_t v) {
  return std::to_string(v);
}
}  // namespace

void TrainConfig::validate() const {
  model.validate();
  if (seq < 2) throw InvalidArgument("seq", s(seq), "must be >= 2");
  if (batch < 1) throw InvalidArgument("batch", s(batch), "must be >= 1");
  if (accum < 1) throw InvalidArgument("accum", s(accum), "must be >= 1");
  if (stage1_steps < 0) throw InvalidArgument("stage1_steps", s(stage1_steps), "must be >= 0");
  if (stage2_steps < 0) throw InvalidArgument("stage2_steps", s(stage2_steps), "must be >= 0");
  if (stage1_steps + stage2_steps < 1) {
    throw InvalidArgument("stage2_steps", s(stage2_steps),
                          "stage1_steps + stage2_steps must be >= 1");
  }
  if (eval_batches < 1) throw InvalidArgument("eval_batches", s(eval_batches), "must be >= 1");
  schedule.validate();
  adamw.validate();
  if (stage1_steps > 0) {
    const std::vector<Config> layers =
        layer_attention(model.layers, lighthouse,
                        dense_layers ? *dense_layers : default_dense_layers(model.layers));
    // make_plan applies every rule that ties levels/pool/topk to the sequence length.
    for (const Config& c : layers) {
      make_plan(c, batch, seq, model.heads, model.head_dim(), model.kv_head_count());
    }
  }
  if (cp != 0) validate_context_parallel();
  if (dp < 1) throw InvalidArgument("dp", s(dp), "must be >= 1 (data-parallel groups; 1 = none)");
  if (dp > 1 && cp < 1) {
    throw InvalidArgument("dp", s(dp),
                          "data parallelism runs across context-parallel groups: it needs cp >= 1 "
                          "(--cp W; WORLD_SIZE = D * W)");
  }
}

void TrainConfig::validate_context_parallel() const {
  if (cp < 0) throw InvalidArgument("cp", s(cp), "must be >= 1 (ranks per sequence; 0 = none)");
  if (model.pack_documents) {
    throw InvalidArgument("pack_documents", "on",
                          "not with context parallelism (--cp): documents would cross the ranks' "
                          "chunks, and the library's CP takes no cu_seqlens");
  }
  if (model.kv_head_count() != model.heads) {
    throw InvalidArgument("kv_heads", s(model.kv_heads),
                          "context parallelism (--cp) needs kv_heads = heads: the library's CP "
                          "does not support grouped-query attention yet");
  }
  // The trainer defaults to the causal selection; say which flag changes it.
  if (stage1_steps > 0 && lighthouse.selection != Selection::kOriginal) {
    throw InvalidArgument("selection", selection_name(lighthouse.selection),
                          "context parallelism (--cp) supports the original selection only so "
                          "far (the causal rule reads the block before each chunk's first, which "
                          "the ranks do not exchange yet; the library's CP has no stride rule): "
                          "pass --selection original");
  }
  // Stage 2, the evaluations and the dense layers: dense attention over the ranks.
  Config dense;  // as all_dense() builds them: no selection, no scorer
  dense.levels = 1;
  make_shard_plan(dense, batch, seq, model.heads, model.head_dim(), cp);
  if (stage1_steps > 0) {
    for (const Config& c :
         layer_attention(model.layers, lighthouse,
                         dense_layers ? *dense_layers : default_dense_layers(model.layers))) {
      make_shard_plan(c, batch, seq, model.heads, model.head_dim(), cp);
    }
  }
}

Trainer::Trainer(const TrainConfig& config, const TokenStream* train, const TokenStream* heldout,
                 std::unique_ptr<LanguageModel> model)
    : config_(config),
      model_(std::move(model)),
      heldout_(heldout),
      packer_(train, config.seq),
      rng_(config.seed ^ 0x6c65616b70726f62ull) {
  config_.validate();
  if (!model_) throw Error("Trainer: no model");
  const ModelConfig& m = model_->config();
  if (m.vocab != config_.model.vocab || m.dim != config_.model.dim ||
      m.layers != config_.model.layers || m.heads != config_.model.heads ||
      m.kv_head_count() != config_.model.kv_head_count() || m.ffn() != config_.model.ffn() ||
      m.tied != config_.model.tied) {
    throw InvalidArgument("model", "a model of another shape",
                          "the trainer's model must be built from TrainConfig::model");
  }
  config_.schedule.total = total_steps();
  // The held-out set must be usable before the first evaluation fails mid-run.
  Packer probe(heldout_, config_.seq);
  // Without a stage 1 the lighthouse config was never checked against seq: everything is dense.
  stage1_attention_ =
      config_.stage1_steps == 0
          ? all_dense(config_.model.layers)
          : layer_attention(config_.model.layers, config_.lighthouse,
                            config_.dense_layers ? *config_.dense_layers
                                                 : default_dense_layers(config_.model.layers));
  const auto n = static_cast<std::size_t>(config_.batch * config_.seq);
  inputs_.resize(n);
  targets_.resize(n);
  token_losses_.resize(n);
  set_stage_attention();
}

Trainer::Trainer(const TrainConfig& config, const TokenStream* train, const TokenStream* heldout,
                 std::shared_ptr<AttentionBackend> backend)
    : Trainer(config, train, heldout,
              make_cpu_model((config.validate(), config.model), config.seed, config.adamw,
                             std::move(backend))) {}

void Trainer::restore(std::int64_t step, std::uint64_t data_position) {
  if (step < 0 || step > total_steps()) {
    throw InvalidArgument("step", s(step),
                          "must be in [0, " + s(total_steps()) + "] (the run's total steps)");
  }
  step_ = step;
  packer_.seek(data_position);
  set_stage_attention();
}

void Trainer::set_data_parallel(int group, Communicator* world) {
  if (world == nullptr) throw Error("Trainer::set_data_parallel: no world communicator");
  const int cp = std::max(config_.cp, 1);
  if (world->size() != config_.dp * cp) {
    throw InvalidArgument("world", std::to_string(world->size()) + " ranks",
                          "must be dp * cp = " + s(config_.dp) + " * " + s(cp));
  }
  if (group < 0 || group >= config_.dp || world->rank() / cp != group) {
    throw InvalidArgument("group", s(group),
                          "must be the world rank / cp (" + s(world->rank() / cp) + ")");
  }
  group_ = group;
  world_ = world;
  model_->set_data_parallel(world);
}

void Trainer::set_stage_attention() {
  model_->set_attention(stage() == 1 ? stage1_attention_ : all_dense(config_.model.layers));
}

// The mean of the D groups' losses, in group order (the same bits on every rank); each rank of
// a group holds its group's loss.
double Trainer::mean_over_groups(double loss) {
  std::vector<double> all(static_cast<std::size_t>(world_->size()));
  world_->all_gather_host(&loss, all.data(), sizeof loss);
  const int cp = std::max(config_.cp, 1);
  double sum = 0;
  for (int g = 0; g < config_.dp; ++g) sum += all[static_cast<std::size_t>(g * cp)];
  return sum / static_cast<double>(config_.dp);
}

StepResult Trainer::step() {
  if (done()) throw Error("Trainer::step: all " + s(total_steps()) + " steps are done");
  const auto start = std::chrono::steady_clock::now();
  set_stage_attention();
  StepResult r;
  r.stage = stage();
  model_->zero_grad();
  double loss = 0;
  for (std::int64_t m = 0; m < config_.accum; ++m) {
    // Data parallelism: this group's sequences of the D * batch the whole world reads.
    packer_.next(config_.batch, inputs_.data(), targets_.data(), config_.dp, group_);
    loss += model_->forward(inputs_.data(), targets_.data(), config_.batch, config_.seq);
    // Each micro-batch contributes 1/accum of the mean, and each of D groups 1/D of it: the sum
    // over the world is then the mean over the D * batch sequences (every group has as many).
    model_->backward(1.0 / static_cast<double>(config_.accum * config_.dp));
  }
  r.loss = loss / static_cast<double>(config_.accum);
  if (world_ != nullptr) r.loss = mean_over_groups(r.loss);
  r.lr = config_.schedule.at(step_);
  r.grad_norm = model_->optimizer_step(r.lr, config_.grad_clip);
  ++step_;
  r.step = step_;
  r.tokens = config_.batch * config_.seq * config_.accum;  // this group's
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

Trainer::HeldoutLoss Trainer::heldout_loss() {
  Packer packer(heldout_, config_.seq);  // the same held-out sequences at every evaluation
  HeldoutLoss out;
  const std::int64_t seq = config_.seq;
  for (std::int64_t i = 0; i < config_.eval_batches; ++i) {
    packer.next(config_.batch, inputs_.data(), targets_.data());
    out.mean +=
        model_->evaluate(inputs_.data(), targets_.data(), config_.batch, seq, token_losses_.data());
    for (std::int64_t b = 0; b < config_.batch; ++b) {
      const std::int32_t* in = inputs_.data() + b * seq;
      const std::int32_t* tg = targets_.data() + b * seq;
      std::vector<std::int64_t> first, distances;
      for (std::int64_t t : recall_positions(in, tg, seq, &first, &distances)) {
        out.recall_sum += token_losses_[static_cast<std::size_t>(b * seq + t)];
        ++out.recall_tokens;
      }
      for (std::size_t k = 0; k < first.size(); ++k) {
        const double loss = token_losses_[static_cast<std::size_t>(b * seq + first[k])];
        out.first_sum += loss;
        ++out.first_tokens;
        const int c = recall_distance_class(distances[k]);
        out.class_sum[static_cast<std::size_t>(c)] += loss;
        ++out.class_tokens[static_cast<std::size_t>(c)];
      }
    }
  }
  out.mean /= static_cast<double>(config_.eval_batches);
  return out;
}

EvalResult Trainer::evaluate() {
  EvalResult r;
  model_->set_attention(all_dense(config_.model.layers));
  const HeldoutLoss dense = heldout_loss();
  r.dense_loss = dense.mean;
  if (dense.recall_tokens > 0) {
    r.recall_loss = dense.recall_sum / static_cast<double>(dense.recall_tokens);
    r.recall_tokens = dense.recall_tokens;
  }
  if (dense.first_tokens > 0) {
    r.recall_first_loss = dense.first_sum / static_cast<double>(dense.first_tokens);
  }
  for (std::size_t c = 0; c < dense.class_sum.size(); ++c) {
    r.recall_first_by_distance_tokens[c] = dense.class_tokens[c];
    if (dense.class_tokens[c] > 0) {
      r.recall_first_by_distance[c] =
          dense.class_sum[c] / static_cast<double>(dense.class_tokens[c]);
    }
  }
  // Until stage 2 has taken a step, the model was last trained with the stage-1 attention.
  if (config_.stage1_steps > 0 && step_ <= config_.stage1_steps) {
    model_->set_attention(stage1_attention_);
    r.train_attention_loss = heldout_loss().mean;
  }
  set_stage_attention();
  return r;
}

}  // namespace lighthouse::train
