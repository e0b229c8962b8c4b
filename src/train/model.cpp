#include "train/model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

#include "lighthouse/communicator.hpp"
#include "lighthouse/error.hpp"
#include "train/layers.hpp"
#include "train/matmul.hpp"
#include "train/rng.hpp"

namespace lighthouse::train {

namespace {

std::string s(std::int64_t v) {
  return std::to_string(v);
}

template <typename T>
constexpr DType dtype_of() {
  return std::is_same_v<T, float> ? DType::kFloat32 : DType::kFloat64;
}

}  // namespace

void ModelConfig::validate() const {
  if (vocab < 2) throw InvalidArgument("vocab", s(vocab), "must be >= 2");
  if (layers < 1) throw InvalidArgument("layers", s(layers), "must be >= 1");
  if (heads < 1) throw InvalidArgument("heads", s(heads), "must be >= 1");
  if (dim < 2 || dim % heads != 0) {
    throw InvalidArgument("dim", s(dim), "must be a positive multiple of heads = " + s(heads));
  }
  if (head_dim() % 2 != 0) {
    throw InvalidArgument(
        "dim", s(dim),
        "dim / heads = " + s(head_dim()) + " must be even (rotary embeddings rotate pairs)");
  }
  if (kv_heads < 0 || (kv_heads > 0 && heads % kv_heads != 0)) {
    throw InvalidArgument("kv_heads", s(kv_heads),
                          "must divide heads = " + s(heads) + " (0 = heads)");
  }
  if (hidden < 0) throw InvalidArgument("hidden", s(hidden), "must be >= 0 (0 = 8/3 * dim)");
  if (!(rope_base > 1.0))
    throw InvalidArgument("rope_base", std::to_string(rope_base), "must be > 1");
  if (!(norm_eps > 0.0)) throw InvalidArgument("norm_eps", std::to_string(norm_eps), "must be > 0");
  if (!(init_std > 0.0)) throw InvalidArgument("init_std", std::to_string(init_std), "must be > 0");
}

std::vector<int> default_dense_layers(int layers) {
  if (layers >= 6) return {0, 1, layers - 2, layers - 1};
  if (layers >= 3) return {layers - 1};
  return {};
}

std::vector<Config> layer_attention(int layers, const Config& sparse,
                                    const std::vector<int>& dense_layers) {
  std::vector<Config> out(static_cast<std::size_t>(layers), sparse);
  Config dense = sparse;
  dense.levels = 1;
  for (int l : dense_layers) {
    if (l < 0 || l >= layers) {
      throw InvalidArgument("dense_layers", s(l),
                            "a layer index must be in [0, " + s(layers) + ")");
    }
    out[static_cast<std::size_t>(l)] = dense;
  }
  return out;
}

std::vector<Config> all_dense(int layers) {
  Config dense;
  dense.levels = 1;
  return std::vector<Config>(static_cast<std::size_t>(layers), dense);
}

std::vector<std::int32_t> document_offsets(const std::int32_t* inputs, std::int64_t batch,
                                           std::int64_t seq) {
  const std::int64_t rows = batch * seq;
  if (rows > std::numeric_limits<std::int32_t>::max()) {
    throw InvalidArgument("batch * seq", s(rows),
                          "packed documents' offsets are int32 (cu_seqlens): at most 2^31 - 1 "
                          "tokens per batch");
  }
  std::vector<std::int32_t> offsets(1, 0);
  for (std::int64_t r = 0; r < rows; ++r) {
    if (inputs[r] == kSeparator || (r + 1) % seq == 0) {
      offsets.push_back(static_cast<std::int32_t>(r + 1));
    }
  }
  return offsets;
}

template <typename T>
Model<T>::Model(const ModelConfig& config, std::uint64_t seed,
                std::shared_ptr<AttentionBackend> backend)
    : config_(config), backend_(std::move(backend)) {
  config_.validate();
  const std::int64_t C = config_.dim, V = config_.vocab, F = config_.ffn();
  embedding_ = add_param("embedding", {V, C}, false);
  for (int l = 0; l < config_.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    LayerParams lp{};
    lp.attn_norm = add_param(p + "attn_norm", {C}, false);
    lp.wqkv = add_param(p + "wqkv", {C, config_.qkv_width()}, true);
    lp.wo = add_param(p + "wo", {C, C}, true);
    lp.mlp_norm = add_param(p + "mlp_norm", {C}, false);
    lp.w13 = add_param(p + "w13", {C, 2 * F}, true);
    lp.w2 = add_param(p + "w2", {F, C}, true);
    layer_params_.push_back(lp);
  }
  final_norm_ = add_param("final_norm", {C}, false);
  if (!config_.tied) head_ = add_param("lm_head", {C, V}, true);

  // Initial values, in parameter order from one generator.
  Rng rng(seed);
  const double out_std = config_.init_std / std::sqrt(2.0 * config_.layers);
  for (Param<T>& p : params_) {
    const bool is_norm = p.shape.size() == 1;
    const bool is_output = p.name.ends_with(".wo") || p.name.ends_with(".w2");
    const double std = is_output ? out_std : config_.init_std;
    for (T& v : p.value) v = is_norm ? T(1) : static_cast<T>(std * rng.normal());
  }
  attention_ = all_dense(config_.layers);
  acts_.resize(static_cast<std::size_t>(config_.layers));
}

template <typename T>
int Model<T>::add_param(const std::string& name, std::vector<std::int64_t> shape, bool decay) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  Param<T> p;
  p.name = name;
  p.shape = std::move(shape);
  p.value.assign(static_cast<std::size_t>(n), T(0));
  p.grad.assign(static_cast<std::size_t>(n), T(0));
  p.decay = decay;
  params_.push_back(std::move(p));
  return static_cast<int>(params_.size() - 1);
}

template <typename T>
std::int64_t Model<T>::parameter_count() const {
  std::int64_t n = 0;
  for (const Param<T>& p : params_) n += static_cast<std::int64_t>(p.value.size());
  return n;
}

template <typename T>
void Model<T>::set_attention(std::vector<Config> per_layer) {
  if (per_layer.size() != static_cast<std::size_t>(config_.layers)) {
    throw InvalidArgument("attention", s(static_cast<std::int64_t>(per_layer.size())) + " configs",
                          "need one per layer (" + s(config_.layers) + ")");
  }
  for (const Config& c : per_layer) validate(c);
  attention_ = std::move(per_layer);
}

template <typename T>
void Model<T>::zero_grad() {
  for (Param<T>& p : params_) std::fill(p.grad.begin(), p.grad.end(), T(0));
}

template <typename T>
void Model<T>::resize(std::int64_t batch, std::int64_t seq) {
  if (batch == batch_ && seq == seq_) return;
  batch_ = batch;
  seq_ = seq;
  const auto R = static_cast<std::size_t>(batch * seq);
  const auto C = static_cast<std::size_t>(config_.dim), V = static_cast<std::size_t>(config_.vocab),
             F = static_cast<std::size_t>(config_.ffn());
  for (LayerActs& a : acts_) {
    a.x.resize(R * C);
    a.n1.resize(R * C);
    a.inv1.resize(R);
    a.att.resize(R * C);
    a.xmid.resize(R * C);
    a.n2.resize(R * C);
    a.inv2.resize(R);
    a.hg.resize(R * 2 * F);
    a.a.resize(R * F);
  }
  x_final_.resize(R * C);
  n_final_.resize(R * C);
  inv_final_.resize(R);
  logits_.resize(R * V);
  qkv_.resize(R * config_.qkv_width());
  dlogits_.resize(R * V);
  dx_.resize(R * C);
  dn_.resize(R * C);
  datt_.resize(R * C);
  da_.resize(R * F);
  dhg_.resize(R * 2 * F);
}

// The rotary tables of this forward's rows: positions [0, whole_seq), or this rank's positions
// of them when sharded (rows of the whole table: the same angles to the bit).
template <typename T>
void Model<T>::rotary_for(std::int64_t whole_seq) {
  if (whole_seq == rope_seq_ && sharded_ == rope_sharded_) return;
  const auto half = static_cast<std::size_t>(config_.head_dim() / 2);
  std::vector<T> cos(static_cast<std::size_t>(whole_seq) * half), sin(cos.size());
  rotary_tables<T>(whole_seq, config_.head_dim(), config_.rope_base, cos.data(), sin.data());
  if (sharded_) {
    rope_cos_.resize(static_cast<std::size_t>(shards_.local_seq()) * half);
    rope_sin_.resize(rope_cos_.size());
    for (std::int64_t j = 0; j < shards_.local_seq(); ++j) {
      const auto from = static_cast<std::size_t>(shards_.position(j)) * half;
      std::copy_n(cos.begin() + from, half, rope_cos_.begin() + j * half);
      std::copy_n(sin.begin() + from, half, rope_sin_.begin() + j * half);
    }
  } else {
    rope_cos_ = std::move(cos);
    rope_sin_ = std::move(sin);
  }
  rope_seq_ = whole_seq;
  rope_sharded_ = sharded_;
}

template <typename T>
void Model<T>::set_context_parallel(Communicator* comm) {
  comm_ = comm;
  sharded_ = false;
  rope_seq_ = -1;  // the rank's positions may differ from the tables'
}

// q (offset 0, H heads), k (offset C) or v (offset C + Ckv, Hkv heads each) inside a [B, N, W]
// buffer (W = qkv_width() = C + 2 Ckv), as the [B, N, heads, D] view the library takes.
template <typename T>
TensorView Model<T>::head_view(T* base, std::int64_t offset, std::int64_t heads) const {
  const std::int64_t W = config_.qkv_width(), H = heads, D = config_.head_dim();
  TensorView v;
  v.data = base + offset;
  v.dtype = dtype_of<T>();
  v.device = Device::kCPU;
  v.rank = 4;
  v.shape = {batch_, seq_, H, D};
  v.strides = {seq_ * W, W, D, 1};
  return v;
}

template <typename T>
double Model<T>::forward(const std::int32_t* inputs, const std::int32_t* targets,
                         std::int64_t batch, std::int64_t seq) {
  const std::int64_t whole_seq = seq, whole_rows = batch * seq;
  sharded_ = comm_ != nullptr && SequenceShards::fits(comm_->size(), whole_seq);
  if (sharded_) {
    shards_ = SequenceShards(comm_->size(), comm_->rank(), batch, whole_seq);
    seq = shards_.local_seq();
  }
  backend_->set_communicator(sharded_ ? comm_ : nullptr);
  resize(batch, seq);
  rotary_for(whole_seq);
  const std::int64_t R = batch * seq, C = config_.dim, V = config_.vocab, F = config_.ffn();
  const std::int64_t H = config_.heads, D = config_.head_dim();
  const std::int64_t Hkv = config_.kv_head_count(), Ckv = Hkv * D, W = config_.qkv_width();
  inputs_.resize(static_cast<std::size_t>(R));
  targets_.resize(static_cast<std::size_t>(R));
  if (sharded_) {
    shards_.take(inputs, inputs_.data());
    shards_.take(targets, targets_.data());
  } else {
    std::copy_n(inputs, R, inputs_.begin());
    std::copy_n(targets, R, targets_.begin());
  }
  counted_ = 0;
  for (std::int64_t r = 0; r < whole_rows; ++r) counted_ += targets[r] >= 0;
  for (std::int64_t r = 0; r < whole_rows; ++r) {
    if (inputs[r] < 0 || inputs[r] >= V) {
      throw InvalidArgument("inputs[" + s(r) + "]", s(inputs[r]),
                            "token ids must be in [0, vocab = " + s(V) + ")");
    }
    if (targets[r] >= V) {
      throw InvalidArgument("targets[" + s(r) + "]", s(targets[r]),
                            "token ids must be < vocab = " + s(V));
    }
  }
  const T eps = static_cast<T>(config_.norm_eps);
  if (config_.pack_documents) documents_ = document_offsets(inputs, batch, seq);

  embedding_forward<T>(inputs_.data(), w(embedding_), acts_[0].x.data(), R, C);
  for (int l = 0; l < config_.layers; ++l) {
    LayerActs& a = acts_[static_cast<std::size_t>(l)];
    const LayerParams& p = layer_params_[static_cast<std::size_t>(l)];
    T* x_next =
        l + 1 < config_.layers ? acts_[static_cast<std::size_t>(l + 1)].x.data() : x_final_.data();
    // Attention branch.
    rmsnorm_forward<T>(a.x.data(), w(p.attn_norm), a.n1.data(), a.inv1.data(), R, C, eps);
    matmul<T>(Trans::kNo, Trans::kNo, R, W, C, a.n1.data(), w(p.wqkv), T(0), qkv_.data());
    rotary_apply<T>(qkv_.data(), batch, seq, H, D, W, rope_cos_.data(), rope_sin_.data(), false);
    rotary_apply<T>(qkv_.data() + C, batch, seq, Hkv, D, W, rope_cos_.data(), rope_sin_.data(),
                    false);
    const TensorView out =
        TensorView::contiguous(a.att.data(), dtype_of<T>(), Device::kCPU, {batch, seq, H, D});
    const Config& attention = attention_[static_cast<std::size_t>(l)];
    const TensorView q = head_view(qkv_.data(), 0, H), k = head_view(qkv_.data(), C, Hkv),
                     v = head_view(qkv_.data(), C + Ckv, Hkv);
    if (config_.pack_documents) {
      const TensorView cu = TensorView::contiguous(documents_.data(), DType::kInt32, Device::kCPU,
                                                   {static_cast<std::int64_t>(documents_.size())});
      backend_->forward_packed(attention, q, k, v, out, cu, a.ctx);
    } else {
      backend_->forward(attention, q, k, v, out, a.ctx);
    }
    std::copy(a.x.begin(), a.x.end(), a.xmid.begin());
    matmul<T>(Trans::kNo, Trans::kNo, R, C, C, a.att.data(), w(p.wo), T(1), a.xmid.data());
    // Feed-forward branch.
    rmsnorm_forward<T>(a.xmid.data(), w(p.mlp_norm), a.n2.data(), a.inv2.data(), R, C, eps);
    matmul<T>(Trans::kNo, Trans::kNo, R, 2 * F, C, a.n2.data(), w(p.w13), T(0), a.hg.data());
    swiglu_forward<T>(a.hg.data(), a.a.data(), R, F);
    std::copy(a.xmid.begin(), a.xmid.end(), x_next);
    matmul<T>(Trans::kNo, Trans::kNo, R, C, F, a.a.data(), w(p.w2), T(1), x_next);
  }
  rmsnorm_forward<T>(x_final_.data(), w(final_norm_), n_final_.data(), inv_final_.data(), R, C,
                     eps);
  if (head_ < 0) {
    matmul<T>(Trans::kNo, Trans::kYes, R, V, C, n_final_.data(), w(embedding_), T(0),
              logits_.data());
  } else {
    matmul<T>(Trans::kNo, Trans::kNo, R, V, C, n_final_.data(), w(head_), T(0), logits_.data());
  }
  if (!sharded_) return cross_entropy<T>(logits_.data(), targets, R, V, nullptr, 1.0);
  // The whole batch's mean as one rank computes it: every row's loss, summed in row order.
  row_loss_.resize(static_cast<std::size_t>(R));
  cross_entropy<T>(logits_.data(), targets_.data(), R, V, nullptr, 1.0, counted_, row_loss_.data());
  gathered_loss_.resize(static_cast<std::size_t>(R * comm_->size()));
  comm_->all_gather_host(row_loss_.data(), gathered_loss_.data(),
                         static_cast<std::size_t>(R) * sizeof(double));
  whole_loss_.resize(static_cast<std::size_t>(whole_rows));
  shards_.put_back(gathered_loss_.data(), 1, whole_loss_.data());
  if (counted_ == 0) return 0.0;
  double total = 0;
  for (double l : whole_loss_) total += l;
  return total / static_cast<double>(counted_);
}

template <typename T>
void Model<T>::backward(double scale) {
  if (batch_ == 0) throw Error("Model::backward called before forward");
  if (comm_ != nullptr && !sharded_) {
    throw Error("Model::backward: under context parallelism over " + s(comm_->size()) +
                " ranks the sequence must split into " + s(2 * comm_->size()) +
                " chunks (seq divisible by 2W); the last forward's did not");
  }
  const std::int64_t R = batch_ * seq_, C = config_.dim, V = config_.vocab, F = config_.ffn();
  const std::int64_t H = config_.heads, D = config_.head_dim();
  const std::int64_t Hkv = config_.kv_head_count(), Ckv = Hkv * D, W = config_.qkv_width();

  cross_entropy<T>(logits_.data(), targets_.data(), R, V, dlogits_.data(), scale,
                   sharded_ ? counted_ : -1);
  // LM head: logits = n_final * W (W = embedding^T when tied).
  if (head_ < 0) {
    matmul<T>(Trans::kNo, Trans::kNo, R, C, V, dlogits_.data(), w(embedding_), T(0), dn_.data());
    matmul<T>(Trans::kYes, Trans::kNo, V, C, R, dlogits_.data(), n_final_.data(), T(1),
              g(embedding_));
  } else {
    matmul<T>(Trans::kNo, Trans::kYes, R, C, V, dlogits_.data(), w(head_), T(0), dn_.data());
    matmul<T>(Trans::kYes, Trans::kNo, C, V, R, n_final_.data(), dlogits_.data(), T(1), g(head_));
  }
  std::fill(dx_.begin(), dx_.end(), T(0));
  rmsnorm_backward<T>(x_final_.data(), w(final_norm_), inv_final_.data(), dn_.data(), dx_.data(),
                      g(final_norm_), R, C);

  // dx_ holds the gradient of the residual stream; each branch adds its input gradient into it.
  T* dqkv = qkv_.data();  // the forward's qkv scratch is free now
  for (int l = config_.layers - 1; l >= 0; --l) {
    LayerActs& a = acts_[static_cast<std::size_t>(l)];
    const LayerParams& p = layer_params_[static_cast<std::size_t>(l)];
    // Feed-forward branch: x_next = xmid + swiglu(n2 W13) W2.
    matmul<T>(Trans::kNo, Trans::kYes, R, F, C, dx_.data(), w(p.w2), T(0), da_.data());
    matmul<T>(Trans::kYes, Trans::kNo, F, C, R, a.a.data(), dx_.data(), T(1), g(p.w2));
    swiglu_backward<T>(a.hg.data(), da_.data(), dhg_.data(), R, F);
    matmul<T>(Trans::kNo, Trans::kYes, R, C, 2 * F, dhg_.data(), w(p.w13), T(0), dn_.data());
    matmul<T>(Trans::kYes, Trans::kNo, C, 2 * F, R, a.n2.data(), dhg_.data(), T(1), g(p.w13));
    rmsnorm_backward<T>(a.xmid.data(), w(p.mlp_norm), a.inv2.data(), dn_.data(), dx_.data(),
                        g(p.mlp_norm), R, C);
    // Attention branch: xmid = x + attention(rope(n1 Wqkv)) Wo.
    matmul<T>(Trans::kNo, Trans::kYes, R, C, C, dx_.data(), w(p.wo), T(0), datt_.data());
    matmul<T>(Trans::kYes, Trans::kNo, C, C, R, a.att.data(), dx_.data(), T(1), g(p.wo));
    const TensorView dout =
        TensorView::contiguous(datt_.data(), dtype_of<T>(), Device::kCPU, {batch_, seq_, H, D});
    backend_->backward(a.ctx, dout, head_view(dqkv, 0, H), head_view(dqkv, C, Hkv),
                       head_view(dqkv, C + Ckv, Hkv));
    rotary_apply<T>(dqkv, batch_, seq_, H, D, W, rope_cos_.data(), rope_sin_.data(), true);
    rotary_apply<T>(dqkv + C, batch_, seq_, Hkv, D, W, rope_cos_.data(), rope_sin_.data(), true);
    matmul<T>(Trans::kNo, Trans::kYes, R, C, W, dqkv, w(p.wqkv), T(0), dn_.data());
    matmul<T>(Trans::kYes, Trans::kNo, C, W, R, a.n1.data(), dqkv, T(1), g(p.wqkv));
    rmsnorm_backward<T>(a.x.data(), w(p.attn_norm), a.inv1.data(), dn_.data(), dx_.data(),
                        g(p.attn_norm), R, C);
  }
  embedding_backward<T>(inputs_.data(), dx_.data(), g(embedding_), R, C);
}

template class Model<float>;
template class Model<double>;

}  // namespace lighthouse::train
