// The seam between the training loop and the device that runs the model. The trainer, the
// probes and the checkpoints talk to a LanguageModel only, so the same loop trains the CPU model
// (model.hpp, float32 with hand-written backward passes on OpenBLAS) and the CUDA model
// (src/train/cuda/, bf16 activations on cuBLASLt and the library's CUDA backend).
//
// A LanguageModel owns its weights, their gradients and its AdamW state, on its device. What
// leaves the device is small: losses, a few logits rows, timings, and float32 host copies of the
// weights and moments for checkpoints (the same safetensors on every device, so a run saved on
// one device resumes on the other).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lighthouse/config.hpp"
#include "lighthouse/error.hpp"
#include "lighthouse/tensor.hpp"
#include "train/model.hpp"
#include "train/optimizer.hpp"

namespace lighthouse::train {

// One trainable tensor as a checkpoint sees it.
struct ParamInfo {
  std::string name;
  std::vector<std::int64_t> shape;
  bool decay = true;  // AdamW's weight decay applies
  std::int64_t numel() const;
};

// Seconds a model spent, by kind of work, since the last take_times(): dense attention layers
// (levels == 1), Lighthouse attention layers, matrix products (projections, MLP, LM head) and
// everything else (norms, rotary, SwiGLU, cross-entropy, embedding, optimizer). On the GPU these
// come from events around each kind of launch, read at the end of a step.
struct WorkTimes {
  double dense_attention = 0, lighthouse_attention = 0, matmul = 0, other = 0;
  double total() const { return dense_attention + lighthouse_attention + matmul + other; }
};

class LanguageModel {
 public:
  virtual ~LanguageModel() = default;

  virtual const ModelConfig& config() const = 0;
  virtual Device device() const = 0;
  // Every parameter, in checkpoint order (the order of Model<float>::params()).
  virtual const std::vector<ParamInfo>& params() const = 0;
  std::int64_t parameter_count() const;

  // One lighthouse::Config per layer; levels == 1 is dense causal attention.
  virtual void set_attention(std::vector<Config> per_layer) = 0;
  virtual const std::vector<Config>& attention() const = 0;

  // Mean cross-entropy of predicting targets from inputs (host arrays, [batch, seq]; a negative
  // target is ignored). Keeps what backward() needs.
  virtual double forward(const std::int32_t* inputs, const std::int32_t* targets,
                         std::int64_t batch, std::int64_t seq) = 0;
  // Adds the gradient of scale * (the last forward's loss) to the gradient accumulators.
  virtual void backward(double scale) = 0;
  virtual void zero_grad() = 0;
  // Clips the accumulated gradients to a global L2 norm of `clip` (no clipping when clip <= 0),
  // then applies one AdamW update at learning rate `lr`. Returns the norm before clipping.
  virtual double optimizer_step(double lr, double clip) = 0;

  // Evaluation without gradients (may keep less than forward()): writes -log p(target) of every
  // position to token_losses[batch * seq] (0 where the target is negative) and returns their mean
  // over the counted positions.
  virtual double evaluate(const std::int32_t* inputs, const std::int32_t* targets,
                          std::int64_t batch, std::int64_t seq, double* token_losses) = 0;
  // Float32 logits of the given rows (b * seq + t) of the last forward() or evaluate(), written
  // to out[rows.size()][vocab].
  virtual void logits_rows(const std::vector<std::int64_t>& rows, float* out) = 0;

  // Host float32 copies for checkpoints, one vector per parameter in params() order.
  virtual std::vector<std::vector<float>> read_params() const = 0;
  virtual void write_params(const std::vector<std::vector<float>>& values) = 0;
  // AdamW's first and second moments (params() order) and its update count.
  struct OptimizerState {
    std::vector<std::vector<float>> m, v;
    std::int64_t steps = 0;
  };
  virtual OptimizerState read_optimizer() const = 0;
  virtual void write_optimizer(const OptimizerState& state) = 0;

  // Context parallelism (docs/DESIGN.md, "The trainer's --cp W"): from now on this model is one
  // of comm->size() ranks that train together (null: alone). Every rank gets the same whole
  // batches and computes on its two chunks of each sequence (sequence_shards.hpp); forward(),
  // evaluate() and logits_rows() are collective (every rank calls them alike) and return the
  // whole batch's numbers; optimizer_step() sums the weight gradients over the ranks first, so
  // the weights stay the same on every rank. A model without it throws for a non-null comm.
  virtual void set_context_parallel(Communicator* comm);
  // Data parallelism across CP groups: optimizer_step() sums the weight gradients over `world`
  // (every rank of every group, the CP group's ranks among them) instead of the CP group: one
  // all-reduce. The caller scales each group's backward so that the sum is the mean's gradient
  // (Trainer::step). Null: over the CP group again. Same default as set_context_parallel.
  virtual void set_data_parallel(Communicator* world);

  // Time by kind of work since the last call (and resets the counters).
  virtual WorkTimes take_times() = 0;
  // Peak device memory in bytes since the last call (and resets the peak); -1 on the CPU.
  virtual std::int64_t take_peak_memory() { return -1; }
};

// The CPU model (Model<float> + AdamW<float>), attention through `backend`.
std::unique_ptr<LanguageModel> make_cpu_model(const ModelConfig& config, std::uint64_t seed,
                                              const AdamWConfig& adamw,
                                              std::shared_ptr<AttentionBackend> backend);

// The CUDA model (src/train/cuda/). Weights are drawn on the host from `seed` exactly as the CPU
// model draws them, then copied to the device, so both start from the same bits.
enum class Precision { kBFloat16, kFloat32 };  // activations and matmul inputs
// What the backward pass recomputes instead of keeping: nothing; each attention layer (qkv, the
// attention output and its context are rebuilt from the saved norm output, see cuda_model.hpp);
// or every layer from its input.
enum class Recompute { kNone, kAttention, kLayer };
struct CudaModelOptions {
  Precision precision = Precision::kBFloat16;
  Recompute recompute = Recompute::kNone;
  // cuDNN's deterministic attention backward (bitwise-reproducible runs); false picks its fast
  // atomic one.
  bool deterministic = true;
  int device = 0;  // CUDA device ordinal
  // The cudaStream_t everything runs on; null: a stream of the model's own. Context parallelism
  // passes its NCCL communicator's stream (the library queues CP's collectives there and
  // requires the attention calls on it), which must outlive the model.
  void* stream = nullptr;
};
// Device memory ran out. The message names what was being allocated, the bytes needed and free,
// and the flags that help (--recompute layer, a smaller --batch or --seq); the run asked for more
// than the device has, so the CLI treats it like bad input (exit status 2).
class OutOfDeviceMemory : public Error {
 public:
  using Error::Error;
};
// Throws lighthouse::Error when the library was built without CUDA or no GPU is present, and
// OutOfDeviceMemory when the weights and optimizer state do not fit.
std::unique_ptr<LanguageModel> make_cuda_model(const ModelConfig& config, std::uint64_t seed,
                                               const AdamWConfig& adamw,
                                               const CudaModelOptions& options);
bool cuda_model_available();

}  // namespace lighthouse::train
