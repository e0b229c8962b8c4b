// A Llama-style byte-level decoder with hand-written forward and backward passes:
//   token embedding -> L x [ x += Attn(RMSNorm(x)); x += SwiGLU(RMSNorm(x)) ] -> RMSNorm -> LM head
// Attention uses rotary position embeddings on q and k and runs through an AttentionBackend;
// each layer has its own lighthouse::Config (levels == 1: dense causal attention), so the same
// weights train with Lighthouse in stage 1 and dense attention in stage 2.
//
// Weights are row-major [in, out] (y = x W), except the embedding table [vocab, dim], which the
// tied LM head uses transposed. Activations are [batch * seq, features]; the attention views the
// fused qkv buffer as q, k, v in [B, N, H, D] without copying.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lighthouse/attention.hpp"
#include "lighthouse/config.hpp"
#include "train/attention_backend.hpp"
#include "train/sequence_shards.hpp"

namespace lighthouse::train {

inline constexpr int kByteVocab = 257;  // 256 bytes + the document separator
inline constexpr std::int32_t kSeparator = 256;

struct ModelConfig {
  int vocab = kByteVocab;
  int dim = 128;
  int layers = 4;
  int heads = 4;
  int kv_heads = 0;  // heads of k and v (grouped-query attention): a divisor of heads; 0 = heads
  int hidden = 0;    // SwiGLU width; 0 = about 8/3 * dim, rounded up to a multiple of 16
  bool tied = true;
  double rope_base = 10000.0;
  double norm_eps = 1e-5;
  double init_std = 0.02;
  // Packed documents: attention stays within documents (each ends with kSeparator), every layer
  // dense or Lighthouse, through the library's cu_seqlens (docs/SPEC.md, "Packed documents").
  bool pack_documents = false;

  int head_dim() const { return dim / heads; }
  int kv_head_count() const { return kv_heads > 0 ? kv_heads : heads; }
  // Columns of the fused q, k, v projection: dim for q, kv_head_count() * head_dim() each for k, v.
  int qkv_width() const { return dim + 2 * kv_head_count() * head_dim(); }
  int ffn() const { return hidden > 0 ? hidden : (8 * dim / 3 + 15) / 16 * 16; }
  // Throws InvalidArgument naming the field ("dim", "heads", ...) and the rule.
  void validate() const;
};

// One trainable tensor: its values, its gradient accumulator, and whether AdamW decays it.
template <typename T>
struct Param {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<T> value, grad;
  bool decay = true;
};

// The layers kept dense in stage 1 by default: the first two and last two when there are at
// least 6 layers (as the original recipe); the last one with 3 to 5 layers (measured on the
// built-in corpus with 4 layers, docs/PERF.md: keeping only the last dense recovered as well as
// keeping the first and the last, and is faster); none with 1 or 2.
std::vector<int> default_dense_layers(int layers);
// Per-layer attention configs: `sparse` for every layer except those listed in `dense_layers`,
// which get levels == 1. Throws InvalidArgument for a layer index out of range.
std::vector<Config> layer_attention(int layers, const Config& sparse,
                                    const std::vector<int>& dense_layers);
// Every layer dense.
std::vector<Config> all_dense(int layers);
// pack_documents: the document offsets (the library's cu_seqlens) of [batch, seq] inputs. A
// document ends after a kSeparator and at the end of its row; the CPU and the CUDA model both
// pass these to their attention. Throws InvalidArgument when batch * seq does not fit int32.
std::vector<std::int32_t> document_offsets(const std::int32_t* inputs, std::int64_t batch,
                                           std::int64_t seq);

template <typename T>
class Model {
 public:
  // Weights drawn from `seed`: normal(0, init_std), output projections scaled by 1/sqrt(2L),
  // norm gains 1. Every layer starts dense.
  Model(const ModelConfig& config, std::uint64_t seed, std::shared_ptr<AttentionBackend> backend);

  const ModelConfig& config() const { return config_; }
  std::vector<Param<T>>& params() { return params_; }
  const std::vector<Param<T>>& params() const { return params_; }
  std::int64_t parameter_count() const;

  void set_attention(std::vector<Config> per_layer);  // one per layer
  const std::vector<Config>& attention() const { return attention_; }
  AttentionBackend& backend() { return *backend_; }

  // Mean cross-entropy of predicting targets from inputs (both [batch, seq], token ids in
  // [0, vocab); a negative target is ignored). Keeps what backward() needs.
  double forward(const std::int32_t* inputs, const std::int32_t* targets, std::int64_t batch,
                 std::int64_t seq);
  // Adds the gradient of scale * (last forward's loss) to every Param::grad.
  void backward(double scale = 1.0);
  void zero_grad();
  // Logits of the last forward, [rows(), vocab]; valid until the next forward.
  const T* logits() const { return logits_.data(); }
  // Token rows of the last forward: batch * seq, or this rank's batch * seq / W when sharded().
  std::int64_t rows() const { return batch_ * seq_; }

  // Context parallelism over `comm`'s ranks (sequence_shards.hpp; null: none). Every rank holds
  // the same weights and gets the same whole batches; forward() then runs this rank's two chunks
  // of every sequence (rotary angles at their sequence positions, attention through the
  // library's CP), and returns the whole batch's mean loss, the same bits as one rank gets for
  // the same logits (the row losses are all-gathered and summed in whole-batch order). A
  // sequence that does not split into 2W chunks runs whole on every rank (evaluations of other
  // lengths); backward() refuses it. The weight gradients are this rank's tokens' part: the
  // caller sums them over the ranks (Communicator::all_reduce_sum) before the optimizer.
  void set_context_parallel(Communicator* comm);
  Communicator* context_parallel() const { return comm_; }
  bool sharded() const { return sharded_; }  // the last forward ran on this rank's chunks
  const SequenceShards& shards() const { return shards_; }

 private:
  struct LayerParams {
    int attn_norm, wqkv, wo, mlp_norm, w13, w2;  // indices into params_
  };
  struct LayerActs {
    std::vector<T> x, n1, inv1, att, xmid, n2, inv2, hg, a;
    Context ctx;
  };
  int add_param(const std::string& name, std::vector<std::int64_t> shape, bool decay);
  T* w(int index) { return params_[static_cast<std::size_t>(index)].value.data(); }
  T* g(int index) { return params_[static_cast<std::size_t>(index)].grad.data(); }
  void resize(std::int64_t batch, std::int64_t seq);
  void rotary_for(std::int64_t whole_seq);
  TensorView head_view(T* base, std::int64_t offset, std::int64_t heads) const;

  ModelConfig config_;
  std::shared_ptr<AttentionBackend> backend_;
  std::vector<Param<T>> params_;
  int embedding_ = 0, final_norm_ = 0, head_ = -1;  // head_ < 0: tied to the embedding
  std::vector<LayerParams> layer_params_;
  std::vector<Config> attention_;

  // pack_documents: the last forward's document offsets into its batch * seq tokens.
  std::vector<std::int32_t> documents_;
  // Activations and scratch of the last forward.
  std::int64_t batch_ = 0, seq_ = 0;
  std::vector<LayerActs> acts_;
  std::vector<std::int32_t> inputs_, targets_;
  std::vector<T> rope_cos_, rope_sin_;
  std::int64_t rope_seq_ = -1;  // the whole sequence length the rope tables are for
  bool rope_sharded_ = false;   // ... and whether they hold this rank's positions only

  // Context parallelism.
  Communicator* comm_ = nullptr;
  bool sharded_ = false;
  SequenceShards shards_;
  std::int64_t counted_ = -1;  // the whole batch's counted targets (sharded forwards)
  std::vector<double> row_loss_, gathered_loss_, whole_loss_;
  std::vector<T> x_final_, n_final_, inv_final_, logits_;
  std::vector<T> qkv_, dlogits_, dx_, dn_, datt_, da_, dhg_;
};

}  // namespace lighthouse::train
