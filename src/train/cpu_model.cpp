// The CPU LanguageModel: Model<float> (hand-written forward and backward passes on OpenBLAS),
// AdamW<float> and global-norm clipping, with the attention through an AttentionBackend. Every
// number is what the model and optimizer compute themselves; this class only adapts them to the
// seam and times the work.
#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

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
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows_; ++r) {
      token_losses[r] = targets[r] < 0 ? 0.0 : token_loss(logits + r * vocab, vocab, targets[r]);
    }
    return mean;
  }

  void logits_rows(const std::vector<std::int64_t>& rows, float* out) override {
    const std::int64_t vocab = model_.config().vocab;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (rows[i] < 0 || rows[i] >= rows_) {
        throw InvalidArgument("rows[" + std::to_string(i) + "]", std::to_string(rows[i]),
                              "must be in [0, " + std::to_string(rows_) +
                                  ") (the rows of the last forward or evaluate)");
      }
      const float* z = model_.logits() + rows[i] * vocab;
      std::copy(z, z + vocab, out + static_cast<std::int64_t>(i) * vocab);
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
  std::int64_t rows_ = 0;  // rows of the last forward or evaluate (logits_rows' range)
  double busy_ = 0;        // seconds inside this model's calls since take_times()
};

}  // namespace

std::unique_ptr<LanguageModel> make_cpu_model(const ModelConfig& config, std::uint64_t seed,
                                              const AdamWConfig& adamw,
                                              std::shared_ptr<AttentionBackend> backend) {
  if (!backend) throw Error("make_cpu_model: no attention backend");
  return std::make_unique<CpuModel>(config, seed, adamw, std::move(backend));
}

}  // namespace lighthouse::train
