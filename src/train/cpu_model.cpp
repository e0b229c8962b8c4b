// The CPU LanguageModel: Model<float> (hand-written forward and backward passes on OpenBLAS),
// AdamW<float> and global-norm clipping, with the attention through an AttentionBackend. Every
// number is what the model and optimizer compute themselves; this class only adapts them to the
// seam and times the work.
#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include "lighthouse/communicator.hpp"
#include "lighthouse/error.hpp"
#include "train/language_model.hpp"
#include "train/layers.hpp"
#include "train/matmul.hpp"

namespace lighthouse::train {

namespace {

class CpuModel final : public LanguageModel {
 public:
  CpuModel(const ModelConfig& config, std::uint64_t seed, const AdamWConfig& adamw,
           std::shared_ptr<AttentionBackend> backend)
      : backend_(backend),
        model_(config, seed, std::move(backend)),
        optimizer_(adamw, model_.params()) {
    for (const Param<float>& p : model_.params()) infos_.push_back({p.name, p.shape, p.decay});
    backend_->reset_seconds();
    reset_matmul_stats();
  }

  const ModelConfig& config() const override { return model_.config(); }
  Device device() const override { return Device::kCPU; }
  const std::vector<ParamInfo>& params() const override { return infos_; }

  void set_attention(std::vector<Config> per_layer) override {
    model_.set_attention(std::move(per_layer));
  }
  const std::vector<Config>& attention() const override { return model_.attention(); }

  void set_context_parallel(Communicator* comm) override { model_.set_context_parallel(comm); }
  void set_data_parallel(Communicator* world) override { world_ = world; }

  double forward(const std::int32_t* inputs, const std::int32_t* targets, std::int64_t batch,
                 std::int64_t seq) override {
    const Timed timed(this);
    rows_ = batch * seq;
    return model_.forward(inputs, targets, batch, seq);
  }

  void backward(double scale) override {
    const Timed timed(this);
    model_.backward(scale);
  }

  void zero_grad() override {
    const Timed timed(this);
    model_.zero_grad();
  }

  double optimizer_step(double lr, double clip) override {
    const Timed timed(this);
    sum_gradients_over_ranks();
    const double norm = clip_grad_norm(model_.params(), clip);
    optimizer_.step(model_.params(), lr);
    return norm;
  }

  // The forward's own mean (the same bits as training's loss); per-token losses in double
  // (token_loss), as the evaluations have always computed them.
  double evaluate(const std::int32_t* inputs, const std::int32_t* targets, std::int64_t batch,
                  std::int64_t seq, double* token_losses) override {
    const Timed timed(this);
    rows_ = batch * seq;
    const double mean = model_.forward(inputs, targets, batch, seq);
    const std::int64_t vocab = model_.config().vocab;
    const float* logits = model_.logits();
    const std::int64_t local = model_.rows();
    std::vector<std::int32_t> local_targets;
    const std::int32_t* tg = targets;
    if (model_.sharded()) {
      local_targets.resize(static_cast<std::size_t>(local));
      model_.shards().take(targets, local_targets.data());
      tg = local_targets.data();
    }
    std::vector<double> losses(static_cast<std::size_t>(local));
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < local; ++r) {
      losses[r] = tg[r] < 0 ? 0.0 : token_loss(logits + r * vocab, vocab, tg[r]);
    }
    if (!model_.sharded()) {
      std::copy(losses.begin(), losses.end(), token_losses);
      return mean;
    }
    Communicator& comm = *model_.context_parallel();
    std::vector<double> gathered(losses.size() * static_cast<std::size_t>(comm.size()));
    comm.all_gather_host(losses.data(), gathered.data(), losses.size() * sizeof(double));
    model_.shards().put_back(gathered.data(), 1, token_losses);
    return mean;
  }

  // Sharded: each rank copies the rows it holds (zeros elsewhere) and an all-gather gives every
  // rank every row from its owner.
  void logits_rows(const std::vector<std::int64_t>& rows, float* out) override {
    const std::int64_t vocab = model_.config().vocab;
    const auto n = static_cast<std::int64_t>(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (rows[i] < 0 || rows[i] >= rows_) {
        throw InvalidArgument("rows[" + std::to_string(i) + "]", std::to_string(rows[i]),
                              "must be in [0, " + std::to_string(rows_) +
                                  ") (the rows of the last forward or evaluate)");
      }
    }
    if (!model_.sharded()) {
      for (std::int64_t i = 0; i < n; ++i) {
        const float* z = model_.logits() + rows[i] * vocab;
        std::copy(z, z + vocab, out + i * vocab);
      }
      return;
    }
    const SequenceShards& sh = model_.shards();
    Communicator& comm = *model_.context_parallel();
    std::vector<float> mine(static_cast<std::size_t>(n * vocab), 0.0f);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t b = rows[i] / sh.seq, t = rows[i] % sh.seq;
      if (sh.owner(t) != sh.rank) continue;
      const float* z = model_.logits() + (b * sh.local_seq() + sh.local_position(t)) * vocab;
      std::copy(z, z + vocab, mine.begin() + i * vocab);
    }
    std::vector<float> all(mine.size() * static_cast<std::size_t>(comm.size()));
    comm.all_gather_host(mine.data(), all.data(), mine.size() * sizeof(float));
    for (std::int64_t i = 0; i < n; ++i) {
      const float* z = all.data() + (sh.owner(rows[i] % sh.seq) * n + i) * vocab;
      std::copy(z, z + vocab, out + i * vocab);
    }
  }

  std::vector<std::vector<float>> read_params() const override {
    std::vector<std::vector<float>> out;
    for (const Param<float>& p : model_.params()) out.push_back(p.value);
    return out;
  }

  void write_params(const std::vector<std::vector<float>>& values) override {
    check_sizes(values, "write_params");
    for (std::size_t i = 0; i < values.size(); ++i) model_.params()[i].value = values[i];
  }

  OptimizerState read_optimizer() const override {
    return {optimizer_.first_moments(), optimizer_.second_moments(), optimizer_.steps()};
  }

  void write_optimizer(const OptimizerState& state) override {
    check_sizes(state.m, "write_optimizer (m)");
    check_sizes(state.v, "write_optimizer (v)");
    optimizer_.first_moments() = state.m;
    optimizer_.second_moments() = state.v;
    optimizer_.set_steps(state.steps);
  }

  // Attention from the backend's clocks, matmuls from matmul()'s, the rest is what remains of
  // the time spent inside this model's calls.
  WorkTimes take_times() override {
    WorkTimes t;
    t.dense_attention = backend_->seconds().dense;
    t.lighthouse_attention = backend_->seconds().lighthouse;
    t.matmul = matmul_stats().seconds;
    t.other = std::max(0.0, busy_ - t.dense_attention - t.lighthouse_attention - t.matmul);
    backend_->reset_seconds();
    reset_matmul_stats();
    busy_ = 0;
    return t;
  }

 private:
  // Adds the wall-clock time of one call to busy_.
  class Timed {
   public:
    explicit Timed(CpuModel* model) : model_(model), start_(std::chrono::steady_clock::now()) {}
    ~Timed() {
      model_->busy_ +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }
    Timed(const Timed&) = delete;
    Timed& operator=(const Timed&) = delete;

   private:
    CpuModel* model_;
    std::chrono::steady_clock::time_point start_;
  };

  // Context parallelism: each rank's gradients are its tokens' part; one all-reduce of all of
  // them (rank order: the same bits on every rank) makes the whole batch's. Data parallelism:
  // over the world, every group's ranks.
  void sum_gradients_over_ranks() {
    Communicator* comm = world_ != nullptr ? world_ : model_.context_parallel();
    if (comm == nullptr) return;
    std::vector<float> flat;
    for (const Param<float>& p : model_.params())
      flat.insert(flat.end(), p.grad.begin(), p.grad.end());
    comm->all_reduce_sum(flat.data(), flat.size());
    auto at = flat.begin();
    for (Param<float>& p : model_.params()) {
      std::copy_n(at, p.grad.size(), p.grad.begin());
      at += static_cast<std::ptrdiff_t>(p.grad.size());
    }
  }

  void check_sizes(const std::vector<std::vector<float>>& values, const char* what) const {
    if (values.size() != infos_.size()) {
      throw InvalidArgument(what, std::to_string(values.size()) + " tensors",
                            "the model has " + std::to_string(infos_.size()) + " parameters");
    }
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (static_cast<std::int64_t>(values[i].size()) != infos_[i].numel()) {
        throw InvalidArgument(std::string(what) + ": " + infos_[i].name,
                              std::to_string(values[i].size()) + " values",
                              "the parameter has " + std::to_string(infos_[i].numel()));
      }
    }
  }

  std::shared_ptr<AttentionBackend> backend_;
  Model<float> model_;
  AdamW<float> optimizer_;
  std::vector<ParamInfo> infos_;
  Communicator* world_ = nullptr;  // data parallelism: the gradients' all-reduce
  std::int64_t rows_ = 0;          // rows of the last forward or evaluate (logits_rows' range)
  double busy_ = 0;                // seconds inside this model's calls since take_times()
};

}  // namespace

std::unique_ptr<LanguageModel> make_cpu_model(const ModelConfig& config, std::uint64_t seed,
                                              const AdamWConfig& adamw,
                                              std::shared_ptr<AttentionBackend> backend) {
  if (!backend) throw Error("make_cpu_model: no attention backend");
  return std::make_unique<CpuModel>(config, seed, adamw, std::move(backend));
}

}  // namespace lighthouse::train
