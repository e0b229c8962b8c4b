// The CUDA language model: the CPU trainer's model (train/model.hpp) on one GPU.
//   token embedding -> L x [ x += Attn(RMSNorm(x)); x += SwiGLU(RMSNorm(x)) ] -> RMSNorm -> LM head
// with the same parameters (names, shapes, order, initial bits), rotary embeddings on q and k,
// and attention through the library (lighthouse::forward/backward on the model's stream: its
// cuDNN path for dense layers, its Lighthouse backend for the others).
//
// Precision (CudaModelOptions::precision):
//  - kBFloat16: fp32 master weights, gradients and AdamW moments; bf16 copies of the weights
//    (written by the AdamW kernel) are what the products read; activations in bf16; products
//    accumulate in fp32. The residual stream x and its gradient stay fp32: every layer adds its
//    two branches onto it (as the products' beta = 1 epilogue) and a bf16 stream would round away
//    most of each small update; it costs 2 bytes per element more than bf16 for the few [rows,
//    dim] buffers that hold it. Normalisation statistics and the loss are fp32.
//  - kFloat32: everything fp32, products in true fp32 (TF32 off), the library's float32 attention
//    (reference kernels; slow, for tests).
//
// Memory (what forward() keeps for backward(), per token row, C = dim, F = SwiGLU width, a = 2
// bytes in bf16 or 4 in fp32). Every layer keeps its input x (4C, fp32). Then:
//  - Recompute::kNone: n1 (aC), att (aC), xmid (4C), n2 (aC), hg (2aF), a (aF), two inv_rms
//    (8); dense layers also qkv (3aC), to which the library's dense context refers; Lighthouse
//    layers keep the library's context instead (gathered q, k, v, o: 4 a H D S/N per token).
//    With pack_documents no layer keeps qkv: every context holds its own copies (below).
//  - Recompute::kAttention: as kNone without qkv, att and the attention context: backward
//    recomputes qkv = rope(n1 Wqkv) and the attention forward. (Rebuilding from a saved qkv
//    instead would keep 3aC to save aC plus a Lighthouse context of ~0.75aC at S/N = 3/16:
//    more memory, not less.)
//  - Recompute::kLayer: the input x only; backward reruns the layer's forward.
// Scratch shared by all layers: one layer's buffers (those not kept), the backward's gradients
// (dx fp32 and its bf16 copy, dn fp32, [rows, max(F, C)] and [rows, max(2F, 3C)] in the
// activation dtype), the one-hot tokens [rows, Vp] for the embedding's backward product, and the
// LM head's chunk of logits (kHeadChunk rows x Vp, Vp = vocab rounded up to a multiple of 8).
// activation_bytes() adds it up; docs/DESIGN.md has the numbers for the paper preset
// (30 layers, width 1024, 98304 tokens: --recompute layer needs about 20 GB).
//
// Packed documents (ModelConfig::pack_documents, as the CPU model): forward() and evaluate()
// compute the inputs' document offsets on the host (document_offsets(): a document ends after a
// separator and at the end of its row), upload them once into the activations, and every
// attention call, dense or Lighthouse, in the forward and in backward()'s recomputations, runs
// the library's cu_seqlens forward on them (the backward follows from its context). The library
// copies each group of documents into zero-padded scratch and keeps copies of q, k, v, out for
// dense documents, so activation_bytes() counts context_bytes_varlen() per context and one
// call's copies. Not with context parallelism (set_context_parallel() refuses it).
//
// Out of device memory: every buffer comes from DeviceArray (device_memory.hpp); the weights at
// construction (a model that does not fit is never built) and the activations at the first
// forward() of a shape, after checking their total against what the device has free: the
// OutOfDeviceMemory error names the buffer, the bytes needed and free, and the flags that help.
// A failed forward() leaves the model without activations, ready for a smaller shape.
//
// Determinism: every kernel here is deterministic and cuBLASLt runs one algorithm per shape, so
// with CudaModelOptions::deterministic (cuDNN's deterministic attention backward) two runs give
// the same bits, and so do the three recompute modes (they run the same kernels on the same
// inputs).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lighthouse/attention.hpp"
#include "train/cuda/device_memory.hpp"
#include "train/cuda/matmul.hpp"
#include "train/cuda/work_timer.hpp"
#include "train/language_model.hpp"
#include "train/sequence_shards.hpp"

namespace lighthouse::train::cuda {

class CudaModel final : public LanguageModel {
 public:
  // Rows of the LM head's logits computed at once.
  static constexpr std::int64_t kHeadChunk = 8192;

  CudaModel(const ModelConfig& config, std::uint64_t seed, const AdamWConfig& adamw,
            const CudaModelOptions& options);
  ~CudaModel() override;
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  const ModelConfig& config() const override { return config_; }
  Device device() const override { return Device::kCUDA; }
  const std::vector<ParamInfo>& params() const override { return infos_; }
  void set_attention(std::vector<Config> per_layer) override;
  const std::vector<Config>& attention() const override { return attention_; }

  double forward(const std::int32_t* inputs, const std::int32_t* targets, std::int64_t batch,
                 std::int64_t seq) override;
  void backward(double scale) override;
  void zero_grad() override;
  double optimizer_step(double lr, double clip) override;
  double evaluate(const std::int32_t* inputs, const std::int32_t* targets, std::int64_t batch,
                  std::int64_t seq, double* token_losses) override;
  void logits_rows(const std::vector<std::int64_t>& rows, float* out) override;
  // Context parallelism over an NCCL communicator whose stream is CudaModelOptions::stream
  // (language_model.hpp; the same scheme as the CPU model, sequence_shards.hpp).
  void set_context_parallel(Communicator* comm) override;
  void set_data_parallel(Communicator* world) override;

  std::vector<std::vector<float>> read_params() const override;
  void write_params(const std::vector<std::vector<float>>& values) override;
  OptimizerState read_optimizer() const override;
  void write_optimizer(const OptimizerState& state) override;

  WorkTimes take_times() override;
  // The default pool's high-water mark (this model's buffers, the library's attention contexts
  // and per-stream scratch, all stream-ordered allocations) plus cuDNN's workspace.
  std::int64_t take_peak_memory() override;

  // Beyond the interface: for the tests and the benchmark.
  const CudaModelOptions& options() const { return options_; }
  // The gradient accumulators, float32, params() order.
  std::vector<std::vector<float>> read_grads() const;
  // The products run since the last call, by shape.
  std::vector<MatmulShape> take_matmul_shapes() { return matmul_->take_shapes(); }
  // Device bytes forward() needs for (batch, seq) beyond the weights: the buffers it allocates
  // and the attention contexts kept until backward() (training), under the current options and
  // attention configs. With pack_documents, for the batch whose document offsets are `documents`
  // (document_offsets(); empty: one document per row): the library's contexts within
  // context_bytes_varlen and one call's zero-padded copies of the documents. Throws
  // InvalidArgument when a layer's config does not fit seq.
  std::int64_t activation_bytes(std::int64_t batch, std::int64_t seq, bool training = true,
                                const std::vector<std::int32_t>& documents = {}) const;
  // Bytes of the weights, gradients, AdamW moments and bf16 copies.
  std::int64_t parameter_bytes() const { return static_cast<std::int64_t>(arena_bytes_); }

 private:
  struct Slot;         // where one parameter lives in the arenas
  struct LayerSet;     // one layer's forward outputs
  struct Activations;  // every buffer of one (batch, seq, training) shape
  struct Request;      // one buffer of an activation plan

  // ---- parameters ----
  std::int64_t offset(int param) const;
  // The weights as the products read them (bf16 copies or the fp32 values).
  Operand weight(int param) const;
  float* value(int param) const;
  float* grad(int param) const;
  void refresh_copies();
  std::vector<std::vector<float>> read_arena(const float* arena) const;
  void write_arena(float* arena, const std::vector<std::vector<float>>& values, const char* what);

  // ---- activations ----
  std::vector<Request> plan(Activations& acts) const;
  void ensure_activations(std::int64_t batch, std::int64_t seq, bool training,
                          const std::vector<std::int32_t>& documents);
  void upload_tokens(const std::int32_t* inputs, const std::int32_t* targets, std::int64_t rows);
  // pack_documents: the offsets of the inputs' documents (document_offsets()); else empty.
  std::vector<std::int32_t> packed_documents(const std::int32_t* inputs, std::int64_t batch,
                                             std::int64_t seq) const;
  void upload_documents(std::vector<std::int32_t> offsets);
  // Context parallelism: whether this (batch, seq) runs on this rank's chunks; returns the
  // sequence length the rank computes (seq / W, or seq).
  std::int64_t shard(std::int64_t batch, std::int64_t seq);
  void local_logits_rows(const std::vector<std::int64_t>& rows, float* out);

  // ---- passes ----
  void run_forward(bool training);
  void layer_forward(int l, const LayerSet& b, const float* x, float* x_next, Context& ctx);
  void attention_forward(int l, const LayerSet& b, Context& ctx);
  void layer_backward(int l, const LayerSet& b, const float* x, const Context& ctx);
  void head_logits(std::int64_t row0, std::int64_t rows);
  void head_backward(float grad_scale);
  void mm(Trans ta, Trans tb, std::int64_t m, std::int64_t n, std::int64_t k, const Operand& a,
          const Operand& b, float beta, const void* c, void* d, DType d_dtype, std::int64_t ldd);
  Operand act(const void* data, std::int64_t ld) const { return {data, act_, ld}; }
  TensorView qkv_view(void* qkv, std::int64_t column) const;
  Options attention_options() const;
  [[noreturn]] void rethrow_attention(int l, const char* pass, const Error& error) const;
  double mean_loss(std::int64_t rows, double* token_losses);

  struct StreamHolder {
    cudaStream_t stream = nullptr;
    ~StreamHolder();
  };

  ModelConfig config_;
  AdamWConfig adamw_;
  CudaModelOptions options_;
  DType act_;
  std::int64_t vocab_padded_;
  StreamHolder stream_holder_;  // destroyed after every buffer that frees on it
  cudaStream_t stream_ = nullptr;

  std::vector<ParamInfo> infos_;
  std::vector<Slot> slots_;
  int embedding_ = 0, final_norm_ = 0, head_ = -1;  // head_ < 0: tied to the embedding
  struct LayerParams {
    int attn_norm, wqkv, wo, mlp_norm, w13, w2;
  };
  std::vector<LayerParams> layer_params_;
  std::int64_t arena_elements_ = 0;
  std::size_t arena_bytes_ = 0;
  DeviceArray values_, grads_, m_, v_, copies_, decay_, norm_scratch_;
  std::int64_t steps_ = 0;

  std::vector<Config> attention_;
  std::unique_ptr<Matmul> matmul_;
  std::unique_ptr<WorkTimer> timer_;
  std::unique_ptr<Activations> acts_;
  std::int64_t counted_ = 0;   // targets >= 0 in the last forward
  bool have_forward_ = false;  // backward() has a forward to differentiate
  bool have_logits_ = false;   // logits_rows() has a forward or evaluate to read

  // Context parallelism.
  Communicator* comm_ = nullptr;
  Communicator* world_ = nullptr;  // data parallelism: the gradients' all-reduce (else comm_)
  bool sharded_ = false;           // the last forward or evaluate ran on this rank's chunks
  SequenceShards shards_;
};

}  // namespace lighthouse::train::cuda
