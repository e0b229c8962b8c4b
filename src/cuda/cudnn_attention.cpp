// cuDNN fused flash attention through the cuDNN frontend's graph API, for bfloat16 and float16
// (attention.cpp routes float32 elsewhere and checks what every dtype shares first). A .cpp
// rather than a .cu: the frontend headers are large and slow to compile, and nothing here is
// device code.
//
// Per thread and device this file keeps one cudnnHandle, the graphs it has built (one per
// distinct SdpaDesc and direction: building takes milliseconds to seconds, executing
// microseconds) and one workspace that only grows. The caches are thread-local rather than
// shared behind a mutex because cuDNN does not promise that an execution plan may be used
// through several handles at once (PyTorch keeps its cuDNN plan caches thread-local for the
// same reason); a thread therefore never waits for another.
#include "cuda/cudnn_attention.hpp"

#include <cudnn_frontend.h>

#include <bit>
#include <compare>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "cuda/check.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cuda {
namespace {

namespace fe = cudnn_frontend;
using fe::graph::Graph;
using fe::graph::Tensor_attributes;

// Frontend calls return an error object rather than a status code.
void check_frontend(fe::error_t status, const char* expr, const char* file, int line,
                    const std::string& context) {
  if (status.is_good()) return;
  detail::throw_failure(detail::call_name(expr), file, line, context + ": " + status.err_msg);
}
#define FE_CHECK(call, context) check_frontend((call), #call, __FILE__, __LINE__, context)

// Tensor ids in the variant pack; any distinct values will do.
enum Uid : std::int64_t { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV };

// ---- validation ---------------------------------------------------------------------------------

std::string strides_string(const std::array<std::int64_t, 4>& st) {
  return "(" + std::to_string(st[0]) + ", " + std::to_string(st[1]) + ", " + std::to_string(st[2]) +
         ", " + std::to_string(st[3]) + ")";
}

// cuDNN's kernels move Q/K/V/O (and their gradients) with 16-byte vector loads.
void check_aligned(const char* name, const void* ptr) {
  if (reinterpret_cast<std::uintptr_t>(ptr) % 16 != 0) {
    throw InvalidArgument(name, std::to_string(reinterpret_cast<std::uintptr_t>(ptr)),
                          "cuDNN attention needs 16-byte aligned pointers");
  }
}

// Strides of dimensions of size 1 are never used to address anything, so they are not held to
// the rules (a [1, h, s, d] view may carry any batch stride).
void check_cudnn_layout(const char* name, const std::array<std::int64_t, 4>& st,
                        const SdpaDesc& desc, std::int64_t heads) {
  const std::array<std::int64_t, 4> dims = {desc.b, heads, desc.s, desc.d};
  if (dims[3] > 1 && st[3] != 1) {
    throw InvalidArgument(name, strides_string(st),
                          "cuDNN attention needs a unit stride on d (the last dimension)");
  }
  for (int i = 0; i < 3; ++i) {
    if (dims[i] > 1 && st[i] % 8 != 0) {
      throw InvalidArgument(name, strides_string(st),
                            "cuDNN attention needs the b, h and s strides to be multiples of 8 "
                            "elements (16 bytes)");
    }
  }
}

void check_cudnn_desc(const SdpaDesc& desc) {
  if (desc.d % 8 != 0 || desc.d > 256) {
    throw InvalidArgument("desc.d", std::to_string(desc.d),
                          "cuDNN attention needs a head dim that is a multiple of 8 and at most "
                          "256 (at most 128 before Hopper)");
  }
  check_cudnn_layout("desc.q_stride", desc.q_stride, desc, desc.h);
  check_cudnn_layout("desc.k_stride", desc.k_stride, desc, desc.kv_heads());
  check_cudnn_layout("desc.v_stride", desc.v_stride, desc, desc.kv_heads());
  check_cudnn_layout("desc.o_stride", desc.o_stride, desc, desc.h);
}

void check_cudnn_grad_layout(const SdpaDesc& desc) {
  check_cudnn_layout("desc.do_stride", stride_or(desc.do_stride, desc.o_stride), desc, desc.h);
  check_cudnn_layout("desc.dq_stride", stride_or(desc.dq_stride, desc.q_stride), desc, desc.h);
  check_cudnn_layout("desc.dk_stride", stride_or(desc.dk_stride, desc.k_stride), desc,
                     desc.kv_heads());
  check_cudnn_layout("desc.dv_stride", stride_or(desc.dv_stride, desc.v_stride), desc,
                     desc.kv_heads());
}

std::string describe(const SdpaDesc& desc, const char* direction) {
  return std::string("causal SDPA ") + direction + " [b=" + std::to_string(desc.b) +
         ", h=" + std::to_string(desc.h) +
         (desc.kv_heads() != desc.h ? ", h_kv=" + std::to_string(desc.kv_heads()) : "") +
         ", s=" + std::to_string(desc.s) + ", d=" + std::to_string(desc.d) + ", " +
         dtype_name(desc.dtype) + "]";
}

// ---- graph cache --------------------------------------------------------------------------------

struct GraphKey {
  bool backward;
  bool deterministic;  // backward only
  DType dtype;
  std::int64_t b, h, h_kv, s, d;
  std::uint32_t scale_bits;  // cuDNN takes the scale as a float
  std::array<std::int64_t, 4> q_stride, k_stride, v_stride, o_stride;
  std::array<std::int64_t, 4> do_stride, dq_stride, dk_stride, dv_stride;  // backward only
  auto operator<=>(const GraphKey&) const = default;
};

GraphKey make_key(const SdpaDesc& desc, bool backward) {
  GraphKey key{};
  key.backward = backward;
  key.deterministic = backward && desc.deterministic;  // the forward graph is shared
  key.dtype = desc.dtype;
  key.b = desc.b;
  key.h = desc.h;
  key.h_kv = desc.kv_heads();
  key.s = desc.s;
  key.d = desc.d;
  key.scale_bits = std::bit_cast<std::uint32_t>(static_cast<float>(desc.scale));
  key.q_stride = desc.q_stride;
  key.k_stride = desc.k_stride;
  key.v_stride = desc.v_stride;
  key.o_stride = desc.o_stride;
  if (backward) {
    key.do_stride = stride_or(desc.do_stride, desc.o_stride);
    key.dq_stride = stride_or(desc.dq_stride, desc.q_stride);
    key.dk_stride = stride_or(desc.dk_stride, desc.k_stride);
    key.dv_stride = stride_or(desc.dv_stride, desc.v_stride);
  }
  return key;
}

struct CachedGraph {
  std::shared_ptr<Graph> graph;
  std::int64_t workspace_bytes = 0;
};

// One device's state for one thread. Destroyed when the thread exits (for the main thread,
// before the CUDA runtime's own exit handlers run), so the calls here still have a runtime.
class DeviceState {
 public:
  explicit DeviceState(int device) : device_(device) { CUDNN_CHECK(cudnnCreate(&handle_)); }
  DeviceState(const DeviceState&) = delete;
  DeviceState& operator=(const DeviceState&) = delete;

  ~DeviceState() {
    // Errors cannot be reported from here; the process or thread is going away.
    int previous = -1;
    const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != device_ &&
                          cudaSetDevice(device_) == cudaSuccess;
    graphs_.clear();  // plans before the handle they were built with
    if (handle_ != nullptr) (void)cudnnDestroy(handle_);
    if (workspace_ != nullptr) (void)cudaFree(workspace_);
    if (done_ != nullptr) (void)cudaEventDestroy(done_);
    if (switched) (void)cudaSetDevice(previous);
  }

  cudnnHandle_t handle() const { return handle_; }
  std::map<GraphKey, CachedGraph>& graphs() { return graphs_; }
  std::size_t workspace_bytes() const { return workspace_bytes_; }

  // A workspace of at least `bytes` that `stream` may use now. The single workspace is shared
  // by every stream this thread uses: work on a new stream first waits for the previous
  // stream's last use of it.
  void* acquire_workspace(std::size_t bytes, cudaStream_t stream) {
    if (bytes > workspace_bytes_) {
      if (done_ != nullptr && used_) CUDA_CHECK(cudaEventSynchronize(done_));
      if (workspace_ != nullptr) CUDA_CHECK(cudaFree(workspace_));
      workspace_ = nullptr;
      workspace_bytes_ = 0;
      CUDA_CHECK(cudaMalloc(&workspace_, bytes));
      workspace_bytes_ = bytes;
    } else if (used_ && stream != last_stream_) {
      CUDA_CHECK(cudaStreamWaitEvent(stream, done_, 0));
    }
    return workspace_;
  }

  // Frees the workspace once its last user is done (the next call allocates again).
  void free_workspace() {
    if (done_ != nullptr && used_) CUDA_CHECK(cudaEventSynchronize(done_));
    if (workspace_ != nullptr) CUDA_CHECK(cudaFree(workspace_));
    workspace_ = nullptr;
    workspace_bytes_ = 0;
    used_ = false;
  }

  // Marks the end of this call's use of the workspace on `stream`.
  void release_workspace(cudaStream_t stream) {
    if (done_ == nullptr) CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(done_, stream));
    last_stream_ = stream;
    used_ = true;
  }

 private:
  int device_;
  cudnnHandle_t handle_ = nullptr;
  std::map<GraphKey, CachedGraph> graphs_;
  void* workspace_ = nullptr;
  std::size_t workspace_bytes_ = 0;
  cudaEvent_t done_ = nullptr;
  cudaStream_t last_stream_ = nullptr;
  bool used_ = false;
};

DeviceState& device_state() {
  thread_local std::unordered_map<int, std::unique_ptr<DeviceState>> states;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  auto& state = states[device];
  if (!state) state = std::make_unique<DeviceState>(device);
  return *state;
}

// ---- graph construction -------------------------------------------------------------------------

fe::DataType_t io_type(DType dtype) {
  return dtype == DType::kBFloat16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF;
}

std::shared_ptr<Graph> new_graph(const SdpaDesc& desc) {
  auto graph = std::make_shared<Graph>();
  // Storage in bf16/fp16; softmax and both matmuls accumulate in fp32.
  graph->set_io_data_type(io_type(desc.dtype))
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return graph;
}

// A [b, heads, s, d] tensor: heads = desc.h for Q, O and their gradients, desc.kv_heads() for K,
// V and theirs (cuDNN runs grouped-query attention natively when they differ).
std::shared_ptr<Tensor_attributes> bhsd_tensor(Graph& graph, const SdpaDesc& desc, const char* name,
                                               Uid uid, const std::array<std::int64_t, 4>& stride,
                                               std::int64_t heads) {
  return graph.tensor(Tensor_attributes()
                          .set_name(name)
                          .set_uid(uid)
                          .set_dim({desc.b, heads, desc.s, desc.d})
                          .set_stride({stride[0], stride[1], stride[2], stride[3]}));
}

// float32 [b, h, s, 1], packed: the layout every cuDNN 9 version reads and writes correctly.
void set_stats_layout(Tensor_attributes& stats, const SdpaDesc& desc) {
  stats.set_data_type(fe::DataType_t::FLOAT)
      .set_dim({desc.b, desc.h, desc.s, 1})
      .set_stride({desc.h * desc.s, desc.s, 1, 1});
}

void build(Graph& graph, cudnnHandle_t handle, const std::string& what) {
  FE_CHECK(graph.validate(), what);
  FE_CHECK(graph.build_operation_graph(handle), what);
  FE_CHECK(graph.create_execution_plans({fe::HeurMode_t::A}), what);
  FE_CHECK(graph.check_support(handle), what);
  FE_CHECK(graph.build_plans(handle), what);
}

CachedGraph build_forward(const SdpaDesc& desc, cudnnHandle_t handle) {
  const std::string what = describe(desc, "forward");
  auto graph = new_graph(desc);
  auto q = bhsd_tensor(*graph, desc, "Q", kQ, desc.q_stride, desc.h);
  auto k = bhsd_tensor(*graph, desc, "K", kK, desc.k_stride, desc.kv_heads());
  auto v = bhsd_tensor(*graph, desc, "V", kV, desc.v_stride, desc.kv_heads());
  // Causal: the diagonal band that ends on the main diagonal (right bound 0), anchored at the
  // top left. With s_q == s_kv the bottom-right anchoring would give the same mask.
  auto options = fe::graph::SDPA_attributes()
                     .set_name("sdpa_forward")
                     .set_generate_stats(true)
                     .set_attn_scale(static_cast<float>(desc.scale))
                     .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                     .set_diagonal_band_right_bound(0);
  auto [o, stats] = graph->sdpa(q, k, v, options);
  o->set_output(true)
      .set_uid(kO)
      .set_dim({desc.b, desc.h, desc.s, desc.d})
      .set_stride({desc.o_stride[0], desc.o_stride[1], desc.o_stride[2], desc.o_stride[3]});
  stats->set_output(true).set_uid(kStats);
  set_stats_layout(*stats, desc);

  build(*graph, handle, what);
  CachedGraph cached{graph, 0};
  FE_CHECK(graph->get_workspace_size(cached.workspace_bytes), what);
  return cached;
}

CachedGraph build_backward(const SdpaDesc& desc, bool deterministic, cudnnHandle_t handle) {
  const std::string what = describe(desc, "backward");
  auto graph = new_graph(desc);
  auto q = bhsd_tensor(*graph, desc, "Q", kQ, desc.q_stride, desc.h);
  auto k = bhsd_tensor(*graph, desc, "K", kK, desc.k_stride, desc.kv_heads());
  auto v = bhsd_tensor(*graph, desc, "V", kV, desc.v_stride, desc.kv_heads());
  auto o = bhsd_tensor(*graph, desc, "O", kO, desc.o_stride, desc.h);
  auto dout =
      bhsd_tensor(*graph, desc, "dO", kDO, stride_or(desc.do_stride, desc.o_stride), desc.h);
  auto stats = graph->tensor(Tensor_attributes().set_name("Stats").set_uid(kStats));
  set_stats_layout(*stats, desc);
  // The deterministic algorithm has no floating-point atomics in the dQ reduction, so repeated
  // runs agree bit for bit (on Hopper it keeps dP in a b*h*s*s 16-bit workspace to do so).
  auto options = fe::graph::SDPA_backward_attributes()
                     .set_name("sdpa_backward")
                     .set_attn_scale(static_cast<float>(desc.scale))
                     .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                     .set_diagonal_band_right_bound(0)
                     .set_deterministic_algorithm(deterministic);
  auto [dq, dk, dv] = graph->sdpa_backward(q, k, v, o, dout, stats, options);
  const auto set_grad = [&](Tensor_attributes& t, Uid uid, const std::array<std::int64_t, 4>& st,
                            std::int64_t heads) {
    t.set_output(true)
        .set_uid(uid)
        .set_dim({desc.b, heads, desc.s, desc.d})
        .set_stride({st[0], st[1], st[2], st[3]});
  };
  set_grad(*dq, kDQ, stride_or(desc.dq_stride, desc.q_stride), desc.h);
  set_grad(*dk, kDK, stride_or(desc.dk_stride, desc.k_stride), desc.kv_heads());
  set_grad(*dv, kDV, stride_or(desc.dv_stride, desc.v_stride), desc.kv_heads());

  build(*graph, handle, what);
  CachedGraph cached{graph, 0};
  FE_CHECK(graph->get_workspace_size(cached.workspace_bytes), what);
  return cached;
}

// Most frontend failures come back as error objects, but a few paths throw (cudnnException, a
// std::runtime_error); callers of this file only ever see lighthouse::Error.
template <typename Body>
auto rethrow_as_error(const std::string& what, Body&& body) {
  try {
    return body();
  } catch (const Error&) {
    throw;
  } catch (const InvalidArgument&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(what + ": the cuDNN frontend threw: " + e.what());
  }
}

const CachedGraph& cached_graph(DeviceState& state, const SdpaDesc& desc, bool backward) {
  const GraphKey key = make_key(desc, backward);
  auto it = state.graphs().find(key);
  if (it == state.graphs().end()) {
    // A failed build throws before anything is cached, so the next call tries again.
    CachedGraph built = rethrow_as_error(describe(desc, backward ? "backward" : "forward"), [&] {
      return backward ? build_backward(desc, key.deterministic, state.handle())
                      : build_forward(desc, state.handle());
    });
    it = state.graphs().emplace(key, std::move(built)).first;
  }
  return it->second;
}

std::string gib(std::size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", static_cast<double>(bytes) / (1u << 30));
  return text;
}

// Device memory a new workspace of `bytes` could take: what the driver reports free, plus the
// workspace it replaces (freed first).
std::size_t available_for_workspace(const DeviceState& state) {
  std::size_t free = 0, total = 0;
  CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return free + state.workspace_bytes();
}

// Called before a workspace larger than the current one is allocated, so that a workspace that
// cannot exist is reported with its cause and remedy rather than as a bare allocation failure.
// The deterministic backward's workspace grows as s^2 and is the one that runs out.
void check_workspace_fits(const DeviceState& state, std::size_t bytes, const SdpaDesc& desc,
                          bool backward) {
  // Slack for the allocator's granularity and the driver's own small allocations.
  constexpr std::size_t kSlack = std::size_t{64} << 20;
  if (bytes + kSlack <= available_for_workspace(state)) return;
  // Memory that stream-ordered pools keep for reuse (Lighthouse's contexts and scratch) does not
  // count as free; once everything queued is done, the default pool's unused part is handed back
  // and the question asked again. Only on this rare path does the call wait for the device.
  int device = 0;
  cudaMemPool_t pool = nullptr;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceSynchronize());
  if (cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
    CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
  }
  const std::size_t available = available_for_workspace(state);
  if (bytes + kSlack <= available) return;
  std::string message = describe(desc, backward ? "backward" : "forward") +
                        " at S = " + std::to_string(desc.s) + ": cuDNN needs a workspace of " +
                        std::to_string(bytes) + " bytes (" + gib(bytes) + "), but only " +
                        std::to_string(available) + " bytes (" + gib(available) +
                        ") of device memory are free";
  if (backward && desc.deterministic) {
    message +=
        ". The deterministic backward's workspace grows as B * H * S^2 * 2 bytes; set "
        "Options::deterministic = false (--deterministic off) to use cuDNN's fast backward, "
        "whose workspace is linear in S (gradients then may differ in the last bits between "
        "runs)";
  }
  throw Error(message);
}

void execute(DeviceState& state, const CachedGraph& cached, const SdpaDesc& desc, bool backward,
             std::unordered_map<std::int64_t, void*>& pack, cudaStream_t stream,
             const std::string& what) {
  CUDNN_CHECK(cudnnSetStream(state.handle(), stream));
  const auto bytes = static_cast<std::size_t>(cached.workspace_bytes);
  if (bytes > state.workspace_bytes()) check_workspace_fits(state, bytes, desc, backward);
  void* workspace = state.acquire_workspace(bytes, stream);
  rethrow_as_error(what,
                   [&] { FE_CHECK(cached.graph->execute(state.handle(), pack, workspace), what); });
  state.release_workspace(stream);
}

}  // namespace

void cudnn_sdpa_forward(const SdpaDesc& desc, const void* q, const void* k, const void* v, void* o,
                        float* stats, cudaStream_t stream) {
  check_aligned("q", q);
  check_aligned("k", k);
  check_aligned("v", v);
  check_aligned("o", o);
  check_cudnn_desc(desc);

  DeviceState& state = device_state();
  const CachedGraph& cached = cached_graph(state, desc, /*backward=*/false);
  std::unordered_map<std::int64_t, void*> pack = {{kQ, const_cast<void*>(q)},
                                                  {kK, const_cast<void*>(k)},
                                                  {kV, const_cast<void*>(v)},
                                                  {kO, o},
                                                  {kStats, stats}};
  execute(state, cached, desc, /*backward=*/false, pack, stream, describe(desc, "forward"));
}

void cudnn_sdpa_backward(const SdpaDesc& desc, const void* q, const void* k, const void* v,
                         const void* o, const void* dout, const float* stats, void* dq, void* dk,
                         void* dv, cudaStream_t stream) {
  check_aligned("q", q);
  check_aligned("k", k);
  check_aligned("v", v);
  check_aligned("o", o);
  check_aligned("dout", dout);
  check_aligned("dq", dq);
  check_aligned("dk", dk);
  check_aligned("dv", dv);
  check_cudnn_desc(desc);
  check_cudnn_grad_layout(desc);

  DeviceState& state = device_state();
  const CachedGraph& cached = cached_graph(state, desc, /*backward=*/true);
  std::unordered_map<std::int64_t, void*> pack = {{kQ, const_cast<void*>(q)},
                                                  {kK, const_cast<void*>(k)},
                                                  {kV, const_cast<void*>(v)},
                                                  {kO, const_cast<void*>(o)},
                                                  {kDO, const_cast<void*>(dout)},
                                                  {kStats, const_cast<float*>(stats)},
                                                  {kDQ, dq},
                                                  {kDK, dk},
                                                  {kDV, dv}};
  execute(state, cached, desc, /*backward=*/true, pack, stream, describe(desc, "backward"));
}

std::size_t cudnn_cached_graph_count() {
  return device_state().graphs().size();
}
void cudnn_release_workspace() {
  device_state().free_workspace();
}

std::size_t cudnn_workspace_bytes() {
  return device_state().workspace_bytes();
}

void* cudnn_borrow_workspace(std::size_t bytes, cudaStream_t stream) {
  DeviceState& state = device_state();
  if (bytes == 0 || state.workspace_bytes() < bytes) return nullptr;
  return state.acquire_workspace(bytes, stream);  // never grows here; orders after other streams
}

void cudnn_return_workspace(cudaStream_t stream) {
  device_state().release_workspace(stream);
}

}  // namespace lighthouse::cuda
