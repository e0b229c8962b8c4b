#include "train/cuda/cuda_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <type_traits>
#include <utility>

#include "cuda/check.hpp"
#include "cuda/cudnn_attention.hpp"  // cudnn_workspace_bytes: cuDNN's workspace, for the peak
#include "lighthouse/communicator.hpp"
#include "lighthouse/error.hpp"
#include "lighthouse/plan.hpp"
#include "train/cuda/ops.hpp"
#include "train/layers.hpp"
#include "train/model.hpp"

namespace lighthouse::train::cuda {

namespace {

std::string s(std::int64_t v) {
  return std::to_string(v);
}

std::int64_t round_up(std::int64_t v, std::int64_t to) {
  return (v + to - 1) / to * to;
}

const char* recompute_name(Recompute r) {
  switch (r) {
    case Recompute::kNone:
      return "none";
    case Recompute::kAttention:
      return "attention";
    case Recompute::kLayer:
      break;
  }
  return "layer";
}

// The checks of Model<T>::forward, with the same messages.
void check_tokens(const std::int32_t* inputs, const std::int32_t* targets, std::int64_t batch,
                  std::int64_t seq, std::int64_t vocab) {
  if (batch < 1) throw InvalidArgument("batch", s(batch), "must be >= 1");
  if (seq < 1) throw InvalidArgument("seq", s(seq), "must be >= 1");
  const std::int64_t rows = batch * seq;
  for (std::int64_t r = 0; r < rows; ++r) {
    if (inputs[r] < 0 || inputs[r] >= vocab) {
      throw InvalidArgument("inputs[" + s(r) + "]", s(inputs[r]),
                            "token ids must be in [0, vocab = " + s(vocab) + ")");
    }
    if (targets[r] >= vocab) {
      throw InvalidArgument("targets[" + s(r) + "]", s(targets[r]),
                            "token ids must be < vocab = " + s(vocab));
    }
  }
}

// Tokens of the zero-padded copies that the library makes of packed documents for one attention
// call under `config` (docs/DESIGN.md, "Packed documents"): each document's run length, its
// padded length or, for a dense one, its own.
std::int64_t packed_run_tokens(const Config& config, const std::vector<std::int32_t>& offsets,
                               std::int64_t heads, std::int64_t head_dim) {
  std::map<std::int64_t, std::int64_t> run_of;  // document length -> run length
  std::int64_t total = 0;
  for (std::size_t i = 0; i + 1 < offsets.size(); ++i) {
    const std::int64_t length = offsets[i + 1] - offsets[i];
    auto [at, fresh] = run_of.try_emplace(length, length);
    if (fresh) {
      const Plan plan = make_plan(config, 1, length, heads, head_dim);
      if (plan.runs_padded()) at->second = plan.padded_seq;
    }
    total += at->second;
  }
  return total;
}

}  // namespace

// ---- layout ------------------------------------------------------------------------------------

// A parameter in the arenas: `rows` x `cols` as checkpoints see it (gains: 1 x n), stored as
// `stored_rows` rows of `ld` elements from `offset`. The vocabulary dimension is padded to a
// multiple of 8 (the embedding's rows, an untied head's columns) so that the LM head's products
// have aligned rows; padding stays zero (zero gradients keep AdamW's update at zero).
struct CudaModel::Slot {
  std::int64_t offset = 0, rows = 0, cols = 0, ld = 0, stored_rows = 0;
  std::int64_t storage() const { return stored_rows * ld; }
};

// One layer's forward outputs beyond its input x: kept per layer, or the shared scratch set.
struct CudaModel::LayerSet {
  void* n1 = nullptr;
  float* inv1 = nullptr;
  void* qkv = nullptr;
  void* att = nullptr;
  float* xmid = nullptr;
  void* n2 = nullptr;
  float* inv2 = nullptr;
  void* hg = nullptr;
  void* a = nullptr;
};

struct CudaModel::Activations {
  std::int64_t batch = 0, seq = 0;
  // The rotary tables' positions: [0, seq), or a rank's chunks of a whole_seq sequence.
  std::int64_t whole_seq = 0;
  bool sharded = false;
  bool training = false;
  std::vector<bool> dense;  // per layer, for the plan (kNone keeps qkv of dense layers)
  std::vector<DeviceArray> arrays;

  std::int32_t* tokens = nullptr;
  std::int32_t* targets = nullptr;
  // pack_documents: the last forward's document offsets (cu_seqlens), on the device (room for
  // rows + 1) and on the host, where they stay until the next forward replaces them (after the
  // copy has completed: every forward synchronises the stream before it returns).
  std::int32_t* cu_seqlens = nullptr;
  std::vector<std::int32_t> offsets;
  float* rope_cos = nullptr;
  float* rope_sin = nullptr;
  std::vector<float*> x;  // training: every layer's input; evaluation: two, in turn
  float* x_final = nullptr;
  void* n_final = nullptr;
  float* inv_final = nullptr;
  float* lse = nullptr;
  float* row_loss = nullptr;
  float* logits = nullptr;  // [kHeadChunk, Vp] fp32
  void* dlogits = nullptr;  // [kHeadChunk, Vp] bf16 (fp32: the logits, in place)

  std::vector<LayerSet> kept;  // per layer (training); fields not kept point into `scratch`
  LayerSet scratch;
  std::vector<Context> contexts;  // per layer, kNone only
  Context scratch_context;

  // Backward.
  float* dx = nullptr;      // gradient of the residual stream
  void* dx_act = nullptr;   // its bf16 copy (fp32: dx itself)
  float* dn = nullptr;      // gradient of a norm's output
  void* d_small = nullptr;  // [rows, max(F, C)]: da, then datt
  void* d_big = nullptr;    // [rows, max(2F, 3C)]: dhg, then dqkv
  void* one_hot = nullptr;  // [rows, Vp]
  float* norm_scratch = nullptr;
};

struct CudaModel::Request {
  std::string what;
  std::size_t bytes;
  std::function<void(void*)> assign;  // stores the allocation's address in its slot
};

CudaModel::StreamHolder::~StreamHolder() {
  if (stream) cudaStreamDestroy(stream);  // returns at once; pending frees complete first
}

// ---- construction ------------------------------------------------------------------------------

CudaModel::CudaModel(const ModelConfig& config, std::uint64_t seed, const AdamWConfig& adamw,
                     const CudaModelOptions& options)
    : config_(config), adamw_(adamw), options_(options) {
  config_.validate();
  if (config_.kv_head_count() != config_.heads) {
    throw InvalidArgument("kv_heads", s(config_.kv_heads),
                          "must equal heads on CUDA: grouped-query attention is in the CPU model "
                          "only so far");
  }
  adamw_.validate();
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    throw Error(std::string("--device cuda: no usable CUDA device (cudaGetDeviceCount: ") +
                cudaGetErrorName(status) + ", " + std::to_string(count) + " devices)");
  }
  if (options_.device < 0 || options_.device >= count) {
    throw InvalidArgument("device", s(options_.device),
                          "must be a CUDA device ordinal in [0, " + s(count) + ")");
  }
  CUDA_CHECK(cudaSetDevice(options_.device));

  act_ = options_.precision == Precision::kBFloat16 ? DType::kBFloat16 : DType::kFloat32;
  const std::int64_t C = config_.dim, D = config_.head_dim(), F = config_.ffn();
  const std::int64_t V = config_.vocab;
  if (act_ == DType::kBFloat16 && (D % 8 != 0 || D > 128)) {
    throw InvalidArgument(
        "dim", s(C),
        "dim / heads = " + s(D) +
            " must be a multiple of 8 up to 128 in bf16 on CUDA (cuDNN attention)");
  }
  if (act_ == DType::kFloat32 && (D % 4 != 0 || D > 256)) {
    throw InvalidArgument(
        "dim", s(C),
        "dim / heads = " + s(D) + " must be a multiple of 4 up to 256 in fp32 on CUDA");
  }
  if (C > kMaxNormDim) {
    throw InvalidArgument("dim", s(C), "must be at most " + s(kMaxNormDim) + " on CUDA");
  }
  if (F % 8 != 0) {
    throw InvalidArgument(
        "hidden", s(F), "the SwiGLU width must be a multiple of 8 on CUDA (aligned product rows)");
  }
  vocab_padded_ = round_up(V, 8);

  // The stream-ordered pool keeps freed memory for the next step (as the library's backend does).
  cudaMemPool_t pool = nullptr;
  CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, options_.device));
  std::uint64_t keep = UINT64_MAX;
  CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  if (options_.stream != nullptr) {
    stream_ = static_cast<cudaStream_t>(options_.stream);
  } else {
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_holder_.stream, cudaStreamNonBlocking));
    stream_ = stream_holder_.stream;
  }

  // Parameters in Model<float>::params() order, each from a multiple of kAdamWChunk.
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape, bool decay,
                 std::int64_t stored_rows, std::int64_t ld) {
    Slot slot;
    slot.rows = shape.size() == 2 ? shape[0] : 1;
    slot.cols = shape.back();
    slot.stored_rows = stored_rows;
    slot.ld = ld;
    slot.offset = arena_elements_;
    arena_elements_ += round_up(slot.storage(), kAdamWChunk);
    slots_.push_back(slot);
    infos_.push_back(ParamInfo{name, std::move(shape), decay});
    return static_cast<int>(slots_.size() - 1);
  };
  embedding_ = add("embedding", {V, C}, false, vocab_padded_, C);
  for (int l = 0; l < config_.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    LayerParams lp{};
    lp.attn_norm = add(p + "attn_norm", {C}, false, 1, C);
    lp.wqkv = add(p + "wqkv", {C, 3 * C}, true, C, 3 * C);
    lp.wo = add(p + "wo", {C, C}, true, C, C);
    lp.mlp_norm = add(p + "mlp_norm", {C}, false, 1, C);
    lp.w13 = add(p + "w13", {C, 2 * F}, true, C, 2 * F);
    lp.w2 = add(p + "w2", {F, C}, true, F, C);
    layer_params_.push_back(lp);
  }
  final_norm_ = add("final_norm", {C}, false, 1, C);
  if (!config_.tied) head_ = add("lm_head", {C, V}, true, C, vocab_padded_);

  // Device memory first: a model that does not fit fails before the host draws its weights.
  const auto n = static_cast<std::size_t>(arena_elements_);
  const std::size_t chunks = static_cast<std::size_t>(arena_elements_ / kAdamWChunk);
  arena_bytes_ = n * 4 * sizeof(float) + (act_ == DType::kBFloat16 ? n * 2 : 0);
  const std::size_t needed = arena_bytes_ + chunks + grad_sum_squares_scratch(arena_elements_) * 8 +
                             Matmul::kWorkspaceBytes;
  if (needed > device_bytes_available()) {
    throw_out_of_memory("the weights, gradients, AdamW moments and bf16 copies of " +
                            s(arena_elements_) + " parameters",
                        needed);
  }
  values_ = DeviceArray("the fp32 weights", n * sizeof(float), stream_);
  grads_ = DeviceArray("the gradient accumulators", n * sizeof(float), stream_);
  m_ = DeviceArray("AdamW's first moments", n * sizeof(float), stream_);
  v_ = DeviceArray("AdamW's second moments", n * sizeof(float), stream_);
  if (act_ == DType::kBFloat16) copies_ = DeviceArray("the bf16 weight copies", n * 2, stream_);
  decay_ = DeviceArray("the weight-decay flags", chunks, stream_);
  norm_scratch_ =
      DeviceArray("the gradient-norm partial sums",
                  (grad_sum_squares_scratch(arena_elements_) + 1) * sizeof(double), stream_);
  for (DeviceArray* arena : {&values_, &grads_, &m_, &v_, &copies_}) {
    if (arena->get()) CUDA_CHECK(cudaMemsetAsync(arena->get(), 0, arena->bytes(), stream_));
  }
  std::vector<std::uint8_t> decay(chunks, 0);
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    const auto first = static_cast<std::size_t>(slots_[i].offset / kAdamWChunk);
    const auto count =
        static_cast<std::size_t>(round_up(slots_[i].storage(), kAdamWChunk) / kAdamWChunk);
    std::fill_n(decay.begin() + static_cast<std::ptrdiff_t>(first), count, infos_[i].decay ? 1 : 0);
  }
  CUDA_CHECK(cudaMemcpyAsync(decay_.get(), decay.data(), chunks, cudaMemcpyHostToDevice, stream_));
  matmul_ = std::make_unique<Matmul>(stream_);
  timer_ = std::make_unique<WorkTimer>(stream_);

  // The initial weights: the CPU model's, drawn on the host from the same seed.
  {
    const Model<float> host(config_, seed, nullptr);
    const auto& host_params = host.params();
    std::vector<std::vector<float>> values;
    for (std::size_t i = 0; i < host_params.size(); ++i) {
      if (i >= infos_.size() || host_params[i].name != infos_[i].name ||
          host_params[i].shape != infos_[i].shape) {
        throw Error("CudaModel: parameter " + std::to_string(i) +
                    " does not match the CPU model's (" + host_params[i].name + ")");
      }
      values.push_back(host_params[i].value);
    }
    write_params(values);
  }
  attention_ = all_dense(config_.layers);
}

CudaModel::~CudaModel() {
  // Activations (and the library contexts in them) free on the stream before it goes.
  acts_.reset();
  if (stream_) cudaStreamSynchronize(stream_);
}

void CudaModel::set_attention(std::vector<Config> per_layer) {
  if (per_layer.size() != static_cast<std::size_t>(config_.layers)) {
    throw InvalidArgument("attention", s(static_cast<std::int64_t>(per_layer.size())) + " configs",
                          "need one per layer (" + s(config_.layers) + ")");
  }
  for (const Config& c : per_layer) validate(c);
  attention_ = std::move(per_layer);
}

// ---- parameters --------------------------------------------------------------------------------

std::int64_t CudaModel::offset(int param) const {
  return slots_[static_cast<std::size_t>(param)].offset;
}

float* CudaModel::value(int param) const {
  return values_.as<float>() + offset(param);
}

float* CudaModel::grad(int param) const {
  return grads_.as<float>() + offset(param);
}

Operand CudaModel::weight(int param) const {
  const std::int64_t ld = slots_[static_cast<std::size_t>(param)].ld;
  if (act_ == DType::kBFloat16) {
    return {static_cast<const char*>(copies_.get()) + offset(param) * 2, DType::kBFloat16, ld};
  }
  return {value(param), DType::kFloat32, ld};
}

void CudaModel::refresh_copies() {
  if (act_ == DType::kBFloat16)
    cast_to_bf16(values_.as<float>(), copies_.get(), arena_elements_, stream_);
}

std::vector<std::vector<float>> CudaModel::read_arena(const float* arena) const {
  std::vector<std::vector<float>> out;
  for (const Slot& slot : slots_) {
    std::vector<float> host(static_cast<std::size_t>(slot.rows * slot.cols));
    CUDA_CHECK(
        cudaMemcpy2DAsync(host.data(), static_cast<std::size_t>(slot.cols) * sizeof(float),
                          arena + slot.offset, static_cast<std::size_t>(slot.ld) * sizeof(float),
                          static_cast<std::size_t>(slot.cols) * sizeof(float),
                          static_cast<std::size_t>(slot.rows), cudaMemcpyDeviceToHost, stream_));
    out.push_back(std::move(host));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  return out;
}

void CudaModel::write_arena(float* arena, const std::vector<std::vector<float>>& values,
                            const char* what) {
  if (values.size() != slots_.size()) {
    throw InvalidArgument(what, s(static_cast<std::int64_t>(values.size())) + " tensors",
                          "the model has " + s(static_cast<std::int64_t>(slots_.size())));
  }
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    const Slot& slot = slots_[i];
    if (static_cast<std::int64_t>(values[i].size()) != slot.rows * slot.cols) {
      throw InvalidArgument(std::string(what) + " " + infos_[i].name,
                            s(static_cast<std::int64_t>(values[i].size())) + " values",
                            "the parameter has " + s(slot.rows * slot.cols));
    }
  }
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    const Slot& slot = slots_[i];
    CUDA_CHECK(
        cudaMemcpy2DAsync(arena + slot.offset, static_cast<std::size_t>(slot.ld) * sizeof(float),
                          values[i].data(), static_cast<std::size_t>(slot.cols) * sizeof(float),
                          static_cast<std::size_t>(slot.cols) * sizeof(float),
                          static_cast<std::size_t>(slot.rows), cudaMemcpyHostToDevice, stream_));
  }
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

std::vector<std::vector<float>> CudaModel::read_params() const {
  return read_arena(values_.as<float>());
}

std::vector<std::vector<float>> CudaModel::read_grads() const {
  return read_arena(grads_.as<float>());
}

void CudaModel::write_params(const std::vector<std::vector<float>>& values) {
  write_arena(values_.as<float>(), values, "params");
  refresh_copies();
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

LanguageModel::OptimizerState CudaModel::read_optimizer() const {
  OptimizerState state;
  state.m = read_arena(m_.as<float>());
  state.v = read_arena(v_.as<float>());
  state.steps = steps_;
  return state;
}

void CudaModel::write_optimizer(const OptimizerState& state) {
  if (state.steps < 0) throw InvalidArgument("optimizer steps", s(state.steps), "must be >= 0");
  write_arena(m_.as<float>(), state.m, "optimizer m");
  write_arena(v_.as<float>(), state.v, "optimizer v");
  steps_ = state.steps;
}

void CudaModel::zero_grad() {
  CUDA_CHECK(cudaMemsetAsync(grads_.get(), 0, grads_.bytes(), stream_));
}

double CudaModel::optimizer_step(double lr, double clip) {
  timer_->mark(Work::kOther);
  // Context parallelism: each rank's gradients are its tokens' part; the sum over the ranks
  // (NCCL, on stream_) is the whole batch's, the same on every rank, and so are the updates.
  // Data parallelism: one all-reduce over the world (every group's ranks) instead.
  if (Communicator* sum = world_ != nullptr ? world_ : comm_)
    sum->all_reduce_sum(grads_.as<float>(), arena_elements_);
  auto* partials = norm_scratch_.as<double>();
  double* total = partials + grad_sum_squares_scratch(arena_elements_);
  grad_sum_squares(grads_.as<float>(), arena_elements_, partials, total, stream_);
  double ss = 0;
  CUDA_CHECK(cudaMemcpyAsync(&ss, total, sizeof ss, cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  const double norm = std::sqrt(ss);
  // clip_grad_norm's factor, rounded to float as it is there.
  const float grad_scale =
      clip > 0 && norm > clip ? static_cast<float>(clip / (norm + 1e-12)) : 1.0f;
  ++steps_;
  AdamWStep step;
  step.lr = lr;
  step.beta1 = adamw_.beta1;
  step.beta2 = adamw_.beta2;
  step.eps = adamw_.eps;
  step.weight_decay = adamw_.weight_decay;
  step.c1 = 1.0 - std::pow(adamw_.beta1, static_cast<double>(steps_));
  step.c2 = 1.0 - std::pow(adamw_.beta2, static_cast<double>(steps_));
  step.grad_scale = grad_scale;
  adamw_update(values_.as<float>(), grads_.as<float>(), m_.as<float>(), v_.as<float>(),
               copies_.get(), decay_.as<std::uint8_t>(), arena_elements_, step, stream_);
  return norm;
}

// ---- activations -------------------------------------------------------------------------------

// Every buffer of one shape, with its name and size; the slots are pointers in `acts`.
std::vector<CudaModel::Request> CudaModel::plan(Activations& acts) const {
  const std::int64_t R = acts.batch * acts.seq, N = acts.seq, C = config_.dim, F = config_.ffn();
  const std::int64_t D = config_.head_dim(), Vp = vocab_padded_, L = config_.layers;
  const auto a = static_cast<std::int64_t>(dtype_size(act_));
  const std::string shape = " [" + s(R) + " rows]";
  std::vector<Request> out;
  auto add = [&](std::string what, std::int64_t bytes, auto*& slot) {
    using Pointer = std::remove_reference_t<decltype(slot)>;
    out.push_back({std::move(what) + shape, static_cast<std::size_t>(bytes),
                   [&slot](void* p) { slot = static_cast<Pointer>(p); }});
  };
  add("token ids", R * 4, acts.tokens);
  add("targets", R * 4, acts.targets);
  if (config_.pack_documents) add("document offsets (cu_seqlens)", (R + 1) * 4, acts.cu_seqlens);
  add("rotary cos table", N * D / 2 * 4, acts.rope_cos);
  add("rotary sin table", N * D / 2 * 4, acts.rope_sin);
  acts.x.assign(acts.training ? static_cast<std::size_t>(L) : 2, nullptr);
  for (std::size_t l = 0; l < acts.x.size(); ++l) {
    add((acts.training ? "layer " + std::to_string(l) : "evaluation") + " residual input x",
        R * C * 4, acts.x[l]);
  }
  add("final residual", R * C * 4, acts.x_final);
  add("final norm output", R * C * a, acts.n_final);
  add("final norm statistics", R * 4, acts.inv_final);
  add("log-sum-exp per row", R * 4, acts.lse);
  add("loss per row", R * 4, acts.row_loss);
  const std::int64_t chunk = std::min(R, kHeadChunk);
  add("LM head logits chunk", chunk * Vp * 4, acts.logits);

  // Which layer outputs are kept per layer (the rest live in the scratch set).
  const Recompute mode = acts.training ? options_.recompute : Recompute::kLayer;
  // Under kNone a layer keeps its qkv when its attention context refers to it instead of copying
  // it: dense layers on CUDA, except over packed documents (the library's contexts then hold
  // zero-padded copies of each document group).
  auto context_refers_to_qkv = [&](std::size_t l) {
    return acts.dense[l] && !config_.pack_documents;
  };
  bool any_copying = false;
  for (std::size_t l = 0; l < acts.dense.size(); ++l) any_copying |= !context_refers_to_qkv(l);
  auto layer_fields = [&](LayerSet& set, const std::string& who, bool keep_attention, bool keep_qkv,
                          bool keep_rest) {
    if (keep_rest) {
      add(who + " n1", R * C * a, set.n1);
      add(who + " inv_rms 1", R * 4, set.inv1);
      add(who + " xmid", R * C * 4, set.xmid);
      add(who + " n2", R * C * a, set.n2);
      add(who + " inv_rms 2", R * 4, set.inv2);
      add(who + " hg", R * 2 * F * a, set.hg);
      add(who + " a", R * F * a, set.a);
    }
    if (keep_qkv) add(who + " qkv", R * 3 * C * a, set.qkv);
    if (keep_attention) add(who + " attention output", R * C * a, set.att);
  };
  // The scratch set holds what some layer does not keep.
  const bool scratch_rest = mode == Recompute::kLayer;
  const bool scratch_attention = mode != Recompute::kNone;
  const bool scratch_qkv = mode != Recompute::kNone || any_copying;
  layer_fields(acts.scratch, "scratch", scratch_attention, scratch_qkv, scratch_rest);
  acts.kept.assign(acts.training ? static_cast<std::size_t>(L) : 0, LayerSet{});
  for (std::size_t l = 0; l < acts.kept.size(); ++l) {
    const bool keep = mode != Recompute::kLayer;
    const bool keep_attention = mode == Recompute::kNone;
    layer_fields(acts.kept[l], "layer " + std::to_string(l) + " saved", keep_attention,
                 keep_attention && context_refers_to_qkv(l), keep);
  }
  if (acts.training) {
    add("residual gradient dx", R * C * 4, acts.dx);
    if (act_ == DType::kBFloat16) add("residual gradient bf16 copy", R * C * a, acts.dx_act);
    add("norm output gradient", R * C * 4, acts.dn);
    add("MLP/attention output gradient", R * std::max(F, C) * a, acts.d_small);
    add("hg/qkv gradient", R * std::max(2 * F, 3 * C) * a, acts.d_big);
    add("one-hot tokens", R * Vp * a, acts.one_hot);
    add("RMSNorm gain partial sums", static_cast<std::int64_t>(rmsnorm_backward_scratch(R, C)) * 4,
        acts.norm_scratch);
    if (act_ == DType::kBFloat16) add("LM head dlogits chunk", chunk * Vp * a, acts.dlogits);
  }
  return out;
}

std::int64_t CudaModel::activation_bytes(std::int64_t batch, std::int64_t seq, bool training,
                                         const std::vector<std::int32_t>& documents) const {
  Activations acts;
  acts.batch = batch;
  acts.seq = seq;
  acts.training = training;
  for (const Config& c : attention_) acts.dense.push_back(c.levels == 1);
  std::int64_t total = 0;
  for (const Request& r : plan(acts))
    total += static_cast<std::int64_t>((r.bytes + 255) / 256 * 256);
  // What the library allocates on top: the contexts kept until backward (kNone: every layer's;
  // otherwise one at a time) and the dense softmax statistics.
  const std::int64_t H = config_.heads, D = config_.head_dim();
  std::int64_t contexts = 0, largest = 0, copies = 0;
  if (config_.pack_documents) {
    // Packed documents: each layer's context within context_bytes_varlen's bound (it holds
    // copies of q, k, v, out for dense documents), and one call's zero-padded copies of its
    // document groups (q, k, v, out in the forward; dout, dq, dk, dv in the backward).
    std::vector<std::int32_t> offsets = documents;
    if (offsets.empty()) {  // one document per row
      for (std::int64_t b = 0; b <= batch; ++b)
        offsets.push_back(static_cast<std::int32_t>(b * seq));
    }
    const auto count = static_cast<std::int64_t>(offsets.size()) - 1;
    const auto a = static_cast<std::int64_t>(dtype_size(act_));
    for (const Config& c : attention_) {
      const auto bytes =
          static_cast<std::int64_t>(context_bytes_varlen(c, batch * seq, count, H, H, D, act_));
      contexts += bytes;
      largest = std::max(largest, bytes);
      copies = std::max(copies, 4 * packed_run_tokens(c, offsets, H, D) * H * D * a);
    }
  } else {
    for (const Config& c : attention_) {
      const Plan p = make_plan(c, batch, seq, H, D);
      const std::int64_t bytes =
          c.levels == 1 ? batch * H * seq * 4 : static_cast<std::int64_t>(context_bytes(p, act_));
      contexts += bytes;
      largest = std::max(largest, bytes);
    }
  }
  total += (training && options_.recompute == Recompute::kNone ? contexts : largest) + copies;
  return total;
}

void CudaModel::ensure_activations(std::int64_t batch, std::int64_t seq, bool training,
                                   const std::vector<std::int32_t>& documents) {
  std::vector<bool> dense;
  for (const Config& c : attention_) dense.push_back(c.levels == 1);
  const std::int64_t whole_seq = sharded_ ? shards_.seq : seq;
  if (acts_ && acts_->batch == batch && acts_->seq == seq && acts_->training == training &&
      acts_->whole_seq == whole_seq && acts_->sharded == sharded_ &&
      (!training || acts_->dense == dense)) {
    return;
  }
  acts_.reset();  // the old buffers go back to the pool first
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  have_forward_ = false;
  have_logits_ = false;
  // Packed documents: the estimate is for this batch's documents (the contexts grow with their
  // number); a later batch that needs more fails in the library's allocation, with the same
  // advice (rethrow_attention).
  const std::int64_t needed = activation_bytes(batch, seq, training, documents);
  const std::size_t available = device_bytes_available();
  if (static_cast<std::size_t>(needed) > available) {
    const std::string packed =
        config_.pack_documents
            ? ", " + s(static_cast<std::int64_t>(documents.size()) - 1) + " packed documents"
            : "";
    throw_out_of_memory(std::string("the ") + (training ? "training" : "evaluation") +
                            " activations of batch " + s(batch) + " x seq " + s(seq) + " (" +
                            dtype_name(act_) + ", --recompute " +
                            recompute_name(options_.recompute) + packed + ")",
                        static_cast<std::size_t>(needed));
  }
  auto fresh = std::make_unique<Activations>();
  fresh->batch = batch;
  fresh->seq = seq;
  fresh->training = training;
  fresh->whole_seq = whole_seq;
  fresh->sharded = sharded_;
  fresh->dense = std::move(dense);
  const std::vector<Request> requests = plan(*fresh);
  fresh->arrays.reserve(requests.size());
  for (const Request& r : requests) {
    fresh->arrays.emplace_back(r.what, r.bytes, stream_);
    r.assign(fresh->arrays.back().get());
  }
  if (act_ == DType::kFloat32) fresh->dx_act = fresh->dx;
  if (act_ == DType::kFloat32 && training) fresh->dlogits = fresh->logits;
  // Fields a layer does not keep are the scratch set's.
  auto fill = [&](LayerSet& set) {
    const LayerSet& sc = fresh->scratch;
    if (!set.n1) {
      set.n1 = sc.n1;
      set.inv1 = sc.inv1;
      set.xmid = sc.xmid;
      set.n2 = sc.n2;
      set.inv2 = sc.inv2;
      set.hg = sc.hg;
      set.a = sc.a;
    }
    if (!set.qkv) set.qkv = sc.qkv;
    if (!set.att) set.att = sc.att;
  };
  for (LayerSet& set : fresh->kept) fill(set);
  fresh->contexts.resize(static_cast<std::size_t>(config_.layers));

  const std::int64_t half = config_.head_dim() / 2;
  std::vector<float> cos(static_cast<std::size_t>(whole_seq * half)), sin(cos.size());
  rotary_tables<float>(whole_seq, config_.head_dim(), config_.rope_base, cos.data(), sin.data());
  if (sharded_) {  // this rank's positions: rows of the whole table
    std::vector<float> c(static_cast<std::size_t>(seq * half)), si(c.size());
    for (std::int64_t j = 0; j < seq; ++j) {
      std::copy_n(cos.begin() + shards_.position(j) * half, half, c.begin() + j * half);
      std::copy_n(sin.begin() + shards_.position(j) * half, half, si.begin() + j * half);
    }
    cos = std::move(c);
    sin = std::move(si);
  }
  CUDA_CHECK(cudaMemcpyAsync(fresh->rope_cos, cos.data(), cos.size() * 4, cudaMemcpyHostToDevice,
                             stream_));
  CUDA_CHECK(cudaMemcpyAsync(fresh->rope_sin, sin.data(), sin.size() * 4, cudaMemcpyHostToDevice,
                             stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host tables die here
  acts_ = std::move(fresh);
}

std::vector<std::int32_t> CudaModel::packed_documents(const std::int32_t* inputs,
                                                      std::int64_t batch, std::int64_t seq) const {
  if (!config_.pack_documents) return {};
  return document_offsets(inputs, batch, seq);
}

std::int64_t CudaModel::shard(std::int64_t batch, std::int64_t seq) {
  sharded_ = comm_ != nullptr && SequenceShards::fits(comm_->size(), seq);
  if (!sharded_) return seq;
  shards_ = SequenceShards(comm_->size(), comm_->rank(), batch, seq);
  return shards_.local_seq();
}

// `rows`: the whole batch's; sharded, this rank's rows of it go to the device.
void CudaModel::upload_tokens(const std::int32_t* inputs, const std::int32_t* targets,
                              std::int64_t rows) {
  counted_ = std::count_if(targets, targets + rows, [](std::int32_t t) { return t >= 0; });
  std::vector<std::int32_t> local_inputs, local_targets;
  if (sharded_) {
    local_inputs.resize(static_cast<std::size_t>(shards_.local_rows()));
    local_targets.resize(local_inputs.size());
    shards_.take(inputs, local_inputs.data());
    shards_.take(targets, local_targets.data());
    inputs = local_inputs.data();
    targets = local_targets.data();
    rows = shards_.local_rows();
  }
  const auto bytes = static_cast<std::size_t>(rows) * sizeof(std::int32_t);
  CUDA_CHECK(cudaMemcpyAsync(acts_->tokens, inputs, bytes, cudaMemcpyHostToDevice, stream_));
  CUDA_CHECK(cudaMemcpyAsync(acts_->targets, targets, bytes, cudaMemcpyHostToDevice, stream_));
  if (sharded_) CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host copies die here
}

// pack_documents: this forward's offsets to the device, once; every attention call of the
// forward and of its backward's recomputations reads them there.
void CudaModel::upload_documents(std::vector<std::int32_t> offsets) {
  if (!config_.pack_documents) return;
  acts_->offsets = std::move(offsets);
  CUDA_CHECK(cudaMemcpyAsync(acts_->cu_seqlens, acts_->offsets.data(),
                             acts_->offsets.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice,
                             stream_));
}

// ---- forward -----------------------------------------------------------------------------------

void CudaModel::mm(Trans ta, Trans tb, std::int64_t m, std::int64_t n, std::int64_t k,
                   const Operand& a, const Operand& b, float beta, const void* c, void* d,
                   DType d_dtype, std::int64_t ldd) {
  timer_->mark(Work::kMatmul);
  matmul_->run(ta, tb, m, n, k, a, b, beta, c, d, d_dtype, ldd);
}

TensorView CudaModel::qkv_view(void* qkv, std::int64_t column) const {
  const std::int64_t C = config_.dim, N = acts_->seq;
  TensorView v;
  v.data = static_cast<char*>(qkv) + column * static_cast<std::int64_t>(dtype_size(act_));
  v.dtype = act_;
  v.device = Device::kCUDA;
  v.rank = 4;
  v.shape = {acts_->batch, N, config_.heads, config_.head_dim()};
  v.strides = {N * 3 * C, 3 * C, config_.head_dim(), 1};
  return v;
}

Options CudaModel::attention_options() const {
  return Options{.stream = stream_,
                 .deterministic = options_.deterministic,
                 .comm = sharded_ ? comm_ : nullptr};
}

void CudaModel::rethrow_attention(int l, const char* pass, const Error& error) const {
  const Config& c = attention_[static_cast<std::size_t>(l)];
  const std::string which =
      c.levels == 1 ? std::string("dense")
                    : "Lighthouse L" + s(c.levels) + " p" + s(c.pool) + " K" + s(c.topk);
  const std::string where =
      "layer " + s(l) + " attention " + pass + " (" + which + ", seq " + s(acts_->seq) + "): ";
  const std::string what = error.what();
  if (what.find("cudaErrorMemoryAllocation") != std::string::npos) {
    throw OutOfDeviceMemory(where + "out of device memory (" + what + "); " +
                            out_of_memory_remedy());
  }
  // cuDNN's deterministic backward needs ~2 B H S^2 bytes of workspace; the library refuses it
  // when that cannot fit, and its message names the remedy (--deterministic off). Not switched
  // silently: the run asked for bitwise reproducibility.
  if (what.find("--deterministic off") != std::string::npos) throw OutOfDeviceMemory(where + what);
  throw Error(where + what);
}

void CudaModel::attention_forward(int l, const LayerSet& b, Context& ctx) {
  const std::int64_t R = acts_->batch * acts_->seq, C = config_.dim;
  const LayerParams& p = layer_params_[static_cast<std::size_t>(l)];
  mm(Trans::kNo, Trans::kNo, R, 3 * C, C, act(b.n1, C), weight(p.wqkv), 0.0f, nullptr, b.qkv, act_,
     3 * C);
  timer_->mark(Work::kOther);
  rotary_qk(b.qkv, act_, R, acts_->seq, config_.heads, config_.head_dim(), acts_->rope_cos,
            acts_->rope_sin, false, stream_);
  const Config& config = attention_[static_cast<std::size_t>(l)];
  timer_->mark(config.levels == 1 ? Work::kDenseAttention : Work::kLighthouseAttention);
  const TensorView out = TensorView::contiguous(
      b.att, act_, Device::kCUDA, {acts_->batch, acts_->seq, config_.heads, config_.head_dim()});
  const TensorView q = qkv_view(b.qkv, 0), k = qkv_view(b.qkv, C), v = qkv_view(b.qkv, 2 * C);
  try {
    if (config_.pack_documents) {
      // Every layer, dense or Lighthouse, attends within each document (the CPU model's
      // forward_packed). The library reads the offsets back once per call (a stream sync).
      const TensorView cu =
          TensorView::contiguous(acts_->cu_seqlens, DType::kInt32, Device::kCUDA,
                                 {static_cast<std::int64_t>(acts_->offsets.size())});
      lighthouse::forward(config, q, k, v, out, cu, ctx, attention_options());
    } else {
      lighthouse::forward(config, q, k, v, out, ctx, attention_options());
    }
  } catch (const InvalidArgument&) {
    throw;
  } catch (const Error& e) {
    rethrow_attention(l, "forward", e);
  }
}

// One layer's forward from its input x into `b`; x_next = null stops before the last product
// (the backward's recomputation needs everything but the layer's output).
void CudaModel::layer_forward(int l, const LayerSet& b, const float* x, float* x_next,
                              Context& ctx) {
  const std::int64_t R = acts_->batch * acts_->seq, C = config_.dim, F = config_.ffn();
  const LayerParams& p = layer_params_[static_cast<std::size_t>(l)];
  const auto eps = static_cast<float>(config_.norm_eps);
  timer_->mark(Work::kOther);
  rmsnorm_forward(x, value(p.attn_norm), b.n1, act_, b.inv1, R, C, eps, stream_);
  attention_forward(l, b, ctx);
  mm(Trans::kNo, Trans::kNo, R, C, C, act(b.att, C), weight(p.wo), 1.0f, x, b.xmid, DType::kFloat32,
     C);
  timer_->mark(Work::kOther);
  rmsnorm_forward(b.xmid, value(p.mlp_norm), b.n2, act_, b.inv2, R, C, eps, stream_);
  mm(Trans::kNo, Trans::kNo, R, 2 * F, C, act(b.n2, C), weight(p.w13), 0.0f, nullptr, b.hg, act_,
     2 * F);
  timer_->mark(Work::kOther);
  swiglu_forward(b.hg, b.a, act_, R, F, stream_);
  if (x_next != nullptr) {
    mm(Trans::kNo, Trans::kNo, R, C, F, act(b.a, F), weight(p.w2), 1.0f, b.xmid, x_next,
       DType::kFloat32, C);
  }
}

// logits[0, rows) = n_final[row0, row0 + rows) W_head, fp32, into the chunk buffer.
void CudaModel::head_logits(std::int64_t row0, std::int64_t rows) {
  const std::int64_t C = config_.dim, Vp = vocab_padded_;
  const Operand n = act(static_cast<const char*>(acts_->n_final) +
                            row0 * C * static_cast<std::int64_t>(dtype_size(act_)),
                        C);
  if (head_ < 0) {  // tied: n E^T with E [Vp, C]
    mm(Trans::kNo, Trans::kYes, rows, Vp, C, n, weight(embedding_), 0.0f, nullptr, acts_->logits,
       DType::kFloat32, Vp);
  } else {
    mm(Trans::kNo, Trans::kNo, rows, Vp, C, n, weight(head_), 0.0f, nullptr, acts_->logits,
       DType::kFloat32, Vp);
  }
}

void CudaModel::run_forward(bool training) {
  Activations& A = *acts_;
  const std::int64_t R = A.batch * A.seq, C = config_.dim, L = config_.layers;
  timer_->mark(Work::kOther);
  embedding_forward(A.tokens, value(embedding_), A.x[0], R, C, stream_);
  for (int l = 0; l < L; ++l) {
    const float* x =
        training ? A.x[static_cast<std::size_t>(l)] : A.x[static_cast<std::size_t>(l % 2)];
    float* x_next = l + 1 == L ? A.x_final
                    : training ? A.x[static_cast<std::size_t>(l + 1)]
                               : A.x[static_cast<std::size_t>((l + 1) % 2)];
    const bool keep = training && options_.recompute == Recompute::kNone;
    const LayerSet& b = training ? A.kept[static_cast<std::size_t>(l)] : A.scratch;
    Context& ctx = keep ? A.contexts[static_cast<std::size_t>(l)] : A.scratch_context;
    layer_forward(l, b, x, x_next, ctx);
    if (!keep) ctx = Context{};  // rebuilt in backward when needed
  }
  timer_->mark(Work::kOther);
  rmsnorm_forward(A.x_final, value(final_norm_), A.n_final, act_, A.inv_final, R, C,
                  static_cast<float>(config_.norm_eps), stream_);
  for (std::int64_t r0 = 0; r0 < R; r0 += kHeadChunk) {
    const std::int64_t rows = std::min(kHeadChunk, R - r0);
    head_logits(r0, rows);
    timer_->mark(Work::kOther);
    cross_entropy_forward(A.logits, vocab_padded_, A.targets + r0, rows, config_.vocab,
                          A.row_loss + r0, A.lse + r0, stream_);
  }
}

// Copies the per-row losses to the host (and into token_losses when given); their mean over the
// counted rows, summed in row order in double. `rows`: the whole batch's; sharded, every rank's
// rows are all-gathered and put back in whole-batch order first (the same sum as one rank's).
double CudaModel::mean_loss(std::int64_t rows, double* token_losses) {
  std::vector<float> losses(static_cast<std::size_t>(rows));
  const std::int64_t local = sharded_ ? shards_.local_rows() : rows;
  std::vector<float> mine(static_cast<std::size_t>(local));
  CUDA_CHECK(cudaMemcpyAsync(mine.data(), acts_->row_loss, mine.size() * sizeof(float),
                             cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (sharded_) {
    std::vector<float> gathered(mine.size() * static_cast<std::size_t>(comm_->size()));
    comm_->all_gather_host(mine.data(), gathered.data(), mine.size() * sizeof(float));
    shards_.put_back(gathered.data(), 1, losses.data());
  } else {
    losses = std::move(mine);
  }
  double total = 0;
  for (std::size_t r = 0; r < losses.size(); ++r) {
    total += losses[r];
    if (token_losses != nullptr) token_losses[r] = losses[r];
  }
  return counted_ == 0 ? 0.0 : total / static_cast<double>(counted_);
}

double CudaModel::forward(const std::int32_t* inputs, const std::int32_t* targets,
                          std::int64_t batch, std::int64_t seq) {
  check_tokens(inputs, targets, batch, seq, config_.vocab);
  std::vector<std::int32_t> documents = packed_documents(inputs, batch, seq);
  ensure_activations(batch, shard(batch, seq), true, documents);
  have_forward_ = false;
  have_logits_ = false;
  upload_tokens(inputs, targets, batch * seq);
  upload_documents(std::move(documents));
  run_forward(true);
  const double loss = mean_loss(batch * seq, nullptr);
  have_forward_ = true;
  have_logits_ = true;
  return loss;
}

double CudaModel::evaluate(const std::int32_t* inputs, const std::int32_t* targets,
                           std::int64_t batch, std::int64_t seq, double* token_losses) {
  check_tokens(inputs, targets, batch, seq, config_.vocab);
  std::vector<std::int32_t> documents = packed_documents(inputs, batch, seq);
  ensure_activations(batch, shard(batch, seq), false, documents);
  have_forward_ = false;
  have_logits_ = false;
  upload_tokens(inputs, targets, batch * seq);
  upload_documents(std::move(documents));
  run_forward(false);
  const double loss = mean_loss(batch * seq, token_losses);
  have_logits_ = true;
  return loss;
}

void CudaModel::logits_rows(const std::vector<std::int64_t>& rows, float* out) {
  if (!have_logits_) throw Error("CudaModel::logits_rows called before forward() or evaluate()");
  const std::int64_t R = acts_->batch * (sharded_ ? shards_.seq : acts_->seq);
  for (std::int64_t r : rows) {
    if (r < 0 || r >= R) {
      throw InvalidArgument("logits row", s(r), "must be in [0, batch * seq = " + s(R) + ")");
    }
  }
  if (!sharded_) {
    local_logits_rows(rows, out);
    return;
  }
  // Each rank computes the rows it holds (zeros for the others); an all-gather gives every rank
  // each row from its owner.
  const auto n = static_cast<std::int64_t>(rows.size());
  const std::int64_t V = config_.vocab;
  std::vector<std::int64_t> local, at;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t b = rows[i] / shards_.seq, t = rows[i] % shards_.seq;
    if (shards_.owner(t) != shards_.rank) continue;
    local.push_back(b * shards_.local_seq() + shards_.local_position(t));
    at.push_back(i);
  }
  std::vector<float> computed(local.size() * static_cast<std::size_t>(V));
  local_logits_rows(local, computed.data());
  std::vector<float> mine(static_cast<std::size_t>(n * V), 0.0f);
  for (std::size_t j = 0; j < at.size(); ++j) {
    std::copy_n(computed.begin() + static_cast<std::int64_t>(j) * V, V, mine.begin() + at[j] * V);
  }
  std::vector<float> all(mine.size() * static_cast<std::size_t>(comm_->size()));
  comm_->all_gather_host(mine.data(), all.data(), mine.size() * sizeof(float));
  for (std::int64_t i = 0; i < n; ++i) {
    const float* z = all.data() + (shards_.owner(rows[i] % shards_.seq) * n + i) * V;
    std::copy_n(z, V, out + i * V);
  }
}

// Logits of rows of this rank's last forward or evaluate (local row indices).
void CudaModel::local_logits_rows(const std::vector<std::int64_t>& rows, float* out) {
  const std::int64_t C = config_.dim, Vp = vocab_padded_;
  const auto k = static_cast<std::int64_t>(rows.size());
  if (k == 0) return;
  DeviceArray index("logits row indices", rows.size() * sizeof(std::int64_t), stream_);
  DeviceArray n("logits rows of the final norm", static_cast<std::size_t>(k * C) * dtype_size(act_),
                stream_);
  DeviceArray logits("logits rows", static_cast<std::size_t>(k * Vp) * sizeof(float), stream_);
  CUDA_CHECK(cudaMemcpyAsync(index.get(), rows.data(), rows.size() * sizeof(std::int64_t),
                             cudaMemcpyHostToDevice, stream_));
  timer_->mark(Work::kOther);
  gather_rows(acts_->n_final, C, index.as<std::int64_t>(), k, C, n.get(), act_, stream_);
  if (head_ < 0) {
    mm(Trans::kNo, Trans::kYes, k, Vp, C, act(n.get(), C), weight(embedding_), 0.0f, nullptr,
       logits.get(), DType::kFloat32, Vp);
  } else {
    mm(Trans::kNo, Trans::kNo, k, Vp, C, act(n.get(), C), weight(head_), 0.0f, nullptr,
       logits.get(), DType::kFloat32, Vp);
  }
  const auto V = static_cast<std::size_t>(config_.vocab);
  CUDA_CHECK(cudaMemcpy2DAsync(out, V * sizeof(float), logits.get(),
                               static_cast<std::size_t>(Vp) * sizeof(float), V * sizeof(float),
                               static_cast<std::size_t>(k), cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// ---- backward ----------------------------------------------------------------------------------

// The LM head and cross-entropy, a chunk of rows at a time: logits again (one small product),
// dlogits, dn_final and the head's weight gradient; then the final norm's backward into dx.
void CudaModel::head_backward(float grad_scale) {
  Activations& A = *acts_;
  const std::int64_t R = A.batch * A.seq, C = config_.dim, Vp = vocab_padded_;
  const auto a = static_cast<std::int64_t>(dtype_size(act_));
  for (std::int64_t r0 = 0; r0 < R; r0 += kHeadChunk) {
    const std::int64_t rows = std::min(kHeadChunk, R - r0);
    head_logits(r0, rows);
    timer_->mark(Work::kOther);
    cross_entropy_backward(A.logits, Vp, A.lse + r0, A.targets + r0, rows, config_.vocab,
                           grad_scale, A.dlogits, act_, stream_);
    const Operand dlogits = act(A.dlogits, Vp);
    const Operand n = act(static_cast<const char*>(A.n_final) + r0 * C * a, C);
    float* dn = A.dn + r0 * C;
    if (head_ < 0) {  // logits = n E^T: dn = dlogits E, dE += dlogits^T n
      mm(Trans::kNo, Trans::kNo, rows, C, Vp, dlogits, weight(embedding_), 0.0f, nullptr, dn,
         DType::kFloat32, C);
      mm(Trans::kYes, Trans::kNo, Vp, C, rows, dlogits, n, 1.0f, grad(embedding_), grad(embedding_),
         DType::kFloat32, C);
    } else {  // logits = n W: dn = dlogits W^T, dW += n^T dlogits
      mm(Trans::kNo, Trans::kYes, rows, C, Vp, dlogits, weight(head_), 0.0f, nullptr, dn,
         DType::kFloat32, C);
      mm(Trans::kYes, Trans::kNo, C, Vp, rows, n, dlogits, 1.0f, grad(head_), grad(head_),
         DType::kFloat32, Vp);
    }
  }
  timer_->mark(Work::kOther);
  rmsnorm_backward(A.x_final, value(final_norm_), A.inv_final, A.dn, A.dx,
                   act_ == DType::kBFloat16 ? A.dx_act : nullptr, act_, grad(final_norm_),
                   A.norm_scratch, R, C, stream_);
}

void CudaModel::layer_backward(int l, const LayerSet& b, const float* x, const Context& ctx) {
  Activations& A = *acts_;
  const std::int64_t R = A.batch * A.seq, C = config_.dim, F = config_.ffn();
  const LayerParams& p = layer_params_[static_cast<std::size_t>(l)];
  void* dx_copy = act_ == DType::kBFloat16 ? A.dx_act : nullptr;
  const Operand dx = act(A.dx_act, C);  // the residual gradient as the products read it
  // Feed-forward branch: x_next = xmid + swiglu(n2 W13) W2.
  mm(Trans::kNo, Trans::kYes, R, F, C, dx, weight(p.w2), 0.0f, nullptr, A.d_small, act_, F);
  mm(Trans::kYes, Trans::kNo, F, C, R, act(b.a, F), dx, 1.0f, grad(p.w2), grad(p.w2),
     DType::kFloat32, C);
  timer_->mark(Work::kOther);
  swiglu_backward(b.hg, A.d_small, A.d_big, act_, R, F, stream_);
  mm(Trans::kNo, Trans::kYes, R, C, 2 * F, act(A.d_big, 2 * F), weight(p.w13), 0.0f, nullptr, A.dn,
     DType::kFloat32, C);
  mm(Trans::kYes, Trans::kNo, C, 2 * F, R, act(b.n2, C), act(A.d_big, 2 * F), 1.0f, grad(p.w13),
     grad(p.w13), DType::kFloat32, 2 * F);
  timer_->mark(Work::kOther);
  rmsnorm_backward(b.xmid, value(p.mlp_norm), b.inv2, A.dn, A.dx, dx_copy, act_, grad(p.mlp_norm),
                   A.norm_scratch, R, C, stream_);
  // Attention branch: xmid = x + attention(rope(n1 Wqkv)) Wo.
  mm(Trans::kNo, Trans::kYes, R, C, C, dx, weight(p.wo), 0.0f, nullptr, A.d_small, act_, C);
  mm(Trans::kYes, Trans::kNo, C, C, R, act(b.att, C), dx, 1.0f, grad(p.wo), grad(p.wo),
     DType::kFloat32, C);
  const Config& config = attention_[static_cast<std::size_t>(l)];
  timer_->mark(config.levels == 1 ? Work::kDenseAttention : Work::kLighthouseAttention);
  const TensorView dout = TensorView::contiguous(
      A.d_small, act_, Device::kCUDA, {A.batch, A.seq, config_.heads, config_.head_dim()});
  try {
    lighthouse::backward(ctx, dout, qkv_view(A.d_big, 0), qkv_view(A.d_big, C),
                         qkv_view(A.d_big, 2 * C), attention_options());
  } catch (const InvalidArgument&) {
    throw;
  } catch (const Error& e) {
    rethrow_attention(l, "backward", e);
  }
  timer_->mark(Work::kOther);
  rotary_qk(A.d_big, act_, R, A.seq, config_.heads, config_.head_dim(), A.rope_cos, A.rope_sin,
            true, stream_);
  mm(Trans::kNo, Trans::kYes, R, C, 3 * C, act(A.d_big, 3 * C), weight(p.wqkv), 0.0f, nullptr, A.dn,
     DType::kFloat32, C);
  mm(Trans::kYes, Trans::kNo, C, 3 * C, R, act(b.n1, C), act(A.d_big, 3 * C), 1.0f, grad(p.wqkv),
     grad(p.wqkv), DType::kFloat32, 3 * C);
  timer_->mark(Work::kOther);
  rmsnorm_backward(x, value(p.attn_norm), b.inv1, A.dn, A.dx, dx_copy, act_, grad(p.attn_norm),
                   A.norm_scratch, R, C, stream_);
}

void CudaModel::backward(double scale) {
  if (!have_forward_) {
    throw Error(
        "CudaModel::backward called without a forward() to differentiate (evaluate() and "
        "backward() consume it)");
  }
  if (comm_ != nullptr && !sharded_) {
    throw Error("CudaModel::backward: under context parallelism over " + s(comm_->size()) +
                " ranks the sequence must split into " + s(2 * comm_->size()) +
                " chunks (seq divisible by 2W); the last forward's did not");
  }
  have_forward_ = false;  // the contexts are consumed below
  Activations& A = *acts_;
  const std::int64_t R = A.batch * A.seq, C = config_.dim, L = config_.layers;
  const float grad_scale =
      counted_ == 0 ? 0.0f : static_cast<float>(scale / static_cast<double>(counted_));
  CUDA_CHECK(cudaMemsetAsync(A.dx, 0, static_cast<std::size_t>(R * C) * sizeof(float), stream_));
  head_backward(grad_scale);
  for (int l = static_cast<int>(L) - 1; l >= 0; --l) {
    const auto li = static_cast<std::size_t>(l);
    const LayerSet& b = A.kept[li];
    const float* x = A.x[li];
    switch (options_.recompute) {
      case Recompute::kNone:
        layer_backward(l, b, x, A.contexts[li]);
        A.contexts[li] = Context{};
        break;
      case Recompute::kAttention:
        timer_->mark(Work::kOther);
        attention_forward(l, b, A.scratch_context);
        layer_backward(l, b, x, A.scratch_context);
        A.scratch_context = Context{};
        break;
      case Recompute::kLayer:
        layer_forward(l, b, x, nullptr, A.scratch_context);
        layer_backward(l, b, x, A.scratch_context);
        A.scratch_context = Context{};
        break;
    }
  }
  // Embedding: dE += one_hot(tokens)^T dx, a deterministic sum over each token's rows.
  timer_->mark(Work::kOther);
  one_hot(A.tokens, A.one_hot, act_, R, vocab_padded_, stream_);
  mm(Trans::kYes, Trans::kNo, vocab_padded_, C, R, act(A.one_hot, vocab_padded_), act(A.dx_act, C),
     1.0f, grad(embedding_), grad(embedding_), DType::kFloat32, C);
}

// ---- measurement -------------------------------------------------------------------------------

void CudaModel::set_data_parallel(Communicator* world) {
  if (world != nullptr && (world->device() != Device::kCUDA || world->stream() != stream_)) {
    throw InvalidArgument("world",
                          world->device() == Device::kCUDA ? "another stream" : "host memory",
                          "the CUDA model's data parallelism needs a CUDA communicator whose "
                          "stream is the model's (CudaModelOptions::stream = world->stream())");
  }
  world_ = world;
}

void CudaModel::set_context_parallel(Communicator* comm) {
  if (comm != nullptr && (comm->device() != Device::kCUDA || comm->stream() != stream_)) {
    throw InvalidArgument("comm",
                          comm->device() == Device::kCUDA ? "another stream" : "host memory",
                          "the CUDA model's context parallelism needs a CUDA communicator whose "
                          "stream is the model's (CudaModelOptions::stream = comm->stream())");
  }
  if (comm != nullptr && config_.pack_documents) {
    throw InvalidArgument("pack_documents", "on",
                          "not with context parallelism: documents would cross the ranks' "
                          "chunks, and the library's CP takes no cu_seqlens");
  }
  comm_ = comm;
  sharded_ = false;
  acts_.reset();  // the rotary tables' positions change
  have_forward_ = false;
  have_logits_ = false;
}

WorkTimes CudaModel::take_times() {
  return timer_->take();
}

std::int64_t CudaModel::take_peak_memory() {
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  return take_pool_peak() + static_cast<std::int64_t>(lighthouse::cuda::cudnn_workspace_bytes());
}

}  // namespace lighthouse::train::cuda

// ---- the factory -------------------------------------------------------------------------------

namespace lighthouse::train {

bool cuda_model_available() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
}

std::unique_ptr<LanguageModel> make_cuda_model(const ModelConfig& config, std::uint64_t seed,
                                               const AdamWConfig& adamw,
                                               const CudaModelOptions& options) {
  return std::make_unique<cuda::CudaModel>(config, seed, adamw, options);
}

}  // namespace lighthouse::train
