// Context parallelism through forward()/backward() with Options::comm (context_parallel.hpp):
// the rank-local stages (cp_stages.cpp), the dense attention of the backend over this rank's
// heads, and the collectives between them.
//
// Forward, on every rank:
//   agreement check                     all_gather_host of each rank's shapes and config
//   select_and_gather                   the two chunks' rows, [3][2][B][H][S/2W][D]
//   pack, all_to_all, unpack            -> this rank's heads, [3][B][H/W][S][D], chunk order
//   dense causal attention              o, softmax statistics (kept for the backward)
//   pack, all_to_all, unpack            o -> the two chunks' rows
//   output_edges, all_gather, scatter   out
// Backward: agreement check; dout_edges, all_gather, scatter_backward; all_to_all of do_sel to
// the heads; the attention's backward; all_to_all of dq, dk, dv back; gather_backward.
//
// Packing: an all_to_all moves equal contiguous blocks, block j to rank j. Rank j attends for
// heads [j H/W, (j+1) H/W), so its block is, for every tensor, chunk and batch, those heads'
// rows: one strided copy (copy_2d) per destination and tensor. Unpacking puts the rows of chunk
// g (from its owner) at rows [g S/2W, (g+1) S/2W) of the sequence: the causal order, since a
// chunk's entries lie in its tiles' token ranges.
#include "core/context_parallel.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "core/carver.hpp"
#include "core/cp_layout.hpp"
#include "lighthouse/communicator.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse {

namespace {

// Device memory for one call, ordered on its stream, freed when the call returns.
class CallBuffers {
 public:
  CallBuffers(Backend& backend, void* stream) : backend_(backend), stream_(stream) {}
  CallBuffers(const CallBuffers&) = delete;
  CallBuffers& operator=(const CallBuffers&) = delete;
  ~CallBuffers() {
    for (void* p : taken_) backend_.deallocate_on(p, stream_);
  }
  char* take(std::size_t bytes) {
    void* p = backend_.allocate_on(bytes > 0 ? bytes : 64, stream_);
    taken_.push_back(p);
    return static_cast<char*>(p);
  }

 private:
  Backend& backend_;
  void* stream_;
  std::vector<void*> taken_;
};

// Adds the stages' times of each backend call and the time spent in collectives (with the
// packing copies around them) to Options::times, when the caller asked for them.
class CallClock {
 public:
  CallClock(const Options& options, Backend& backend)
      : total_(options.times), backend_(backend), stream_(options.stream), options_(options) {
    if (total_) *total_ = StageTimes{};
    options_.times = total_ ? &part_ : nullptr;
    options_.comm = nullptr;
  }
  // Options for a backend call, whose stage times are added by add().
  const Options& stage() {
    part_ = StageTimes{};
    return options_;
  }
  void add() {
    if (!total_) return;
    total_->pyramid += part_.pyramid;
    total_->selection += part_.selection;
    total_->gather += part_.gather;
    total_->attention += part_.attention;
    total_->scatter += part_.scatter;
  }
  template <typename Work>
  void communicate(Work&& work) {
    if (!total_) {
      work();
      return;
    }
    backend_.synchronize_stream(stream_);
    const auto t0 = std::chrono::steady_clock::now();
    work();
    backend_.synchronize_stream(stream_);
    total_->communication +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }

 private:
  StageTimes* total_;
  Backend& backend_;
  void* stream_;
  Options options_;
  StageTimes part_;
};

// ---- the agreement check --------------------------------------------------------------------

enum Field {
  kMagic,
  kCall,
  kWorld,
  kRank,
  kBatch,
  kSeq,
  kHeads,
  kHeadDim,
  kLevels,
  kPool,
  kTopk,
  kSelectionMode,
  kScale,
  kDType,
  kDevice,
  kFailed,
  kFields
};
constexpr std::array<const char*, kFields> kFieldNames = {
    "magic",  "call", "cp",   "rank",      "batch", "seq",   "heads",  "head_dim",
    "levels", "pool", "topk", "selection", "scale", "dtype", "device", "failed"};
constexpr std::int64_t kMagicValue = 0x4c48435031;  // "LHCP1"
static_assert(kFields * sizeof(std::int64_t) == kCpCheckBytes);

enum class Call : std::int64_t { kForward = 1, kBackward = 2 };

// What a rank says about its call: the shapes and configuration it was given (raw: they may be
// invalid), and whether its own checks rejected them.
struct CallRecord {
  Call call = Call::kForward;
  std::array<std::int64_t, kMaxRank> shape{};  // [B, N / W, H, D] of q (forward) or dout
  Config config;
  double scale = 0;
  DType dtype = DType::kFloat32;
  Device device = Device::kCPU;
  bool failed = false;
};

std::string field_text(int f, std::int64_t v) {
  switch (f) {
    case kCall:
      return v == static_cast<std::int64_t>(Call::kForward) ? "forward" : "backward";
    case kSelectionMode:
      return selection_name(static_cast<Selection>(v));
    case kScale: {
      double d;
      std::memcpy(&d, &v, sizeof d);
      return std::to_string(d);
    }
    case kDType:
      return dtype_name(static_cast<DType>(v));
    case kDevice:
      return device_name(static_cast<Device>(v));
    default:
      return std::to_string(v);
  }
}

// Every rank sends its record to all and compares all of them with rank 0's in the same order,
// so that every rank reaches the same verdict: an InvalidArgument naming the first field that
// differs (the same on every rank), else the lowest rank whose own checks failed (-1: none).
int check_agreement(Communicator& comm, const CallRecord& call) {
  std::array<std::int64_t, kFields> mine{};
  mine[kMagic] = kMagicValue;
  mine[kCall] = static_cast<std::int64_t>(call.call);
  mine[kWorld] = comm.size();
  mine[kRank] = comm.rank();
  mine[kBatch] = call.shape[0];
  mine[kSeq] = call.shape[1];
  mine[kHeads] = call.shape[2];
  mine[kHeadDim] = call.shape[3];
  mine[kLevels] = call.config.levels;
  mine[kPool] = call.config.pool;
  mine[kTopk] = call.config.topk;
  mine[kSelectionMode] = static_cast<std::int64_t>(call.config.selection);
  std::memcpy(&mine[kScale], &call.scale, sizeof(double));
  mine[kDType] = static_cast<std::int64_t>(call.dtype);
  mine[kDevice] = static_cast<std::int64_t>(call.device);
  mine[kFailed] = call.failed ? 1 : 0;
  const int world = comm.size();
  std::vector<std::int64_t> all(static_cast<std::size_t>(kFields) * world);
  comm.all_gather_host(mine.data(), all.data(), kCpCheckBytes);
  int failed = -1;
  for (int j = 0; j < world; ++j) {
    const std::int64_t* theirs = all.data() + static_cast<std::size_t>(j) * kFields;
    if (theirs[kMagic] != kMagicValue || theirs[kCall] != all[kCall]) {
      throw Error("cp: rank " + std::to_string(j) +
                  " is not in the same call as rank 0 (forward and backward, or another "
                  "collective, interleaved across ranks)");
    }
    if (theirs[kRank] != j || theirs[kWorld] != world) {
      throw InvalidArgument("comm",
                            "rank " + std::to_string(j) + " says it is rank " +
                                std::to_string(theirs[kRank]) + " of " +
                                std::to_string(theirs[kWorld]),
                            "the communicator's ranks must be 0.." + std::to_string(world - 1) +
                                ", each once, all with size " + std::to_string(world));
    }
    for (int f = kBatch; f <= kDevice; ++f) {
      if (theirs[f] != all[f]) {
        throw InvalidArgument(kFieldNames[f],
                              field_text(f, all[f]) + " on rank 0, " + field_text(f, theirs[f]) +
                                  " on rank " + std::to_string(j),
                              "every rank of a context-parallel call must pass the same shapes "
                              "and configuration");
      }
    }
    if (theirs[kFailed] != 0 && failed < 0) failed = j;
  }
  return failed;
}

// After the agreement check: this rank's own error, or RankFailed when another rank rejected
// its call.
void stop_if_any_failed(int failed, const std::exception_ptr& mine, int rank) {
  if (mine) std::rethrow_exception(mine);
  if (failed >= 0) {
    throw RankFailed("cp: rank " + std::to_string(failed) +
                     " rejected its call (its own error says why); rank " + std::to_string(rank) +
                     " stops too");
  }
}

// ---- checks of the call ---------------------------------------------------------------------

void check_comm(const Communicator& comm, Device device, const Options& options) {
  if (comm.size() < 1 || comm.rank() < 0 || comm.rank() >= comm.size()) {
    throw InvalidArgument(
        "comm", "rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size()),
        "must have a size >= 1 and a rank in [0, size)");
  }
  if (comm.device() != device) {
    throw InvalidArgument("comm", std::string("a ") + device_name(comm.device()) + " communicator",
                          std::string("must move the tensors' memory: ") + device_name(device));
  }
  if (device != Device::kCPU && comm.stream() != options.stream) {
    throw InvalidArgument("stream", options.stream ? "another stream" : "null (default stream)",
                          "must be the communicator's stream (Options::stream == "
                          "comm->stream()), on which its collectives are queued");
  }
  if (device != Device::kCPU && options.check_finite) {
    throw InvalidArgument("check_finite", "true",
                          "is not supported with context parallelism on device tensors yet");
  }
}

// The dense attention over this rank's heads: levels == 1 over the gathered sequence.
Plan rows_plan(const ShardPlan& sp) {
  Config dense;
  dense.levels = 1;
  dense.scale = sp.plan.scale;
  return make_plan(dense, sp.plan.batch, sp.plan.S, sp.heads_per_rank, sp.plan.head_dim);
}

// ---- packing for the all-to-alls --------------------------------------------------------------

// Sizes of the row blocks (bytes): a rank's rows per chunk, batch and head (one "row run"), and
// an all-to-all block per tensor and peer.
struct Blocks {
  std::size_t run;    // S/2W rows of D
  std::size_t chunk;  // one chunk's rows of one tensor: B H runs
  std::size_t peer;   // per tensor and peer: 2 B H/W runs
  std::size_t heads;  // one tensor on one rank after the all-to-all: B H/W S rows
};
Blocks blocks_of(const ShardPlan& sp, DType dtype) {
  const std::size_t e = dtype_size(dtype);
  const auto B = static_cast<std::size_t>(sp.plan.batch);
  const auto H = static_cast<std::size_t>(sp.plan.heads);
  const auto Hw = static_cast<std::size_t>(sp.heads_per_rank);
  const std::size_t run = static_cast<std::size_t>(sp.chunk_rows * sp.plan.head_dim) * e;
  return {run, B * H * run, 2 * B * Hw * run,
          B * Hw * static_cast<std::size_t>(sp.plan.S) *
              static_cast<std::size_t>(sp.plan.head_dim) * e};
}

// rows[t] ([2][B][H][S/2W][D]) -> send ([W][n][2][B][H/W][S/2W][D]).
void pack_rows(Backend& backend, const ShardPlan& sp, const Blocks& z,
               const std::vector<const char*>& rows, char* send, const Options& options) {
  const std::size_t n = rows.size(), width = z.peer / (2 * sp.plan.batch);
  for (int peer = 0; peer < sp.world; ++peer) {
    for (std::size_t t = 0; t < n; ++t) {
      backend.copy_2d(send + (peer * n + t) * z.peer, width, rows[t] + peer * width,
                      z.chunk / sp.plan.batch, width, 2 * sp.plan.batch, options);
    }
  }
}

// recv ([W][n][2][B][H/W][S/2W][D], block r from rank r) -> heads[t] ([B][H/W][S][D]).
void unpack_heads(Backend& backend, const ShardPlan& sp, const Blocks& z, const char* recv,
                  const std::vector<char*>& heads, const Options& options) {
  const std::size_t n = heads.size(), half = z.peer / 2;
  const std::size_t row_pitch = z.run * 2 * sp.world;  // S rows of D
  for (int src = 0; src < sp.world; ++src) {
    for (std::size_t t = 0; t < n; ++t) {
      for (int c = 0; c < 2; ++c) {
        const std::int64_t g = cp_chunk(sp.world, src, c);
        backend.copy_2d(heads[t] + g * z.run, row_pitch, recv + (src * n + t) * z.peer + c * half,
                        z.run, z.run, sp.plan.batch * sp.heads_per_rank, options);
      }
    }
  }
}

// heads[t] ([B][H/W][S][D]) -> send ([W][n][2][B][H/W][S/2W][D], block r for rank r's chunks).
void pack_heads(Backend& backend, const ShardPlan& sp, const Blocks& z,
                const std::vector<const char*>& heads, char* send, const Options& options) {
  const std::size_t n = heads.size(), half = z.peer / 2;
  const std::size_t row_pitch = z.run * 2 * sp.world;
  for (int dst = 0; dst < sp.world; ++dst) {
    for (std::size_t t = 0; t < n; ++t) {
      for (int c = 0; c < 2; ++c) {
        const std::int64_t g = cp_chunk(sp.world, dst, c);
        backend.copy_2d(send + (dst * n + t) * z.peer + c * half, z.run, heads[t] + g * z.run,
                        row_pitch, z.run, sp.plan.batch * sp.heads_per_rank, options);
      }
    }
  }
}

// recv ([W][n][2][B][H/W][S/2W][D], block r holding heads of rank r) -> rows[t]
// ([2][B][H][S/2W][D]).
void unpack_rows(Backend& backend, const ShardPlan& sp, const Blocks& z, const char* recv,
                 const std::vector<char*>& rows, const Options& options) {
  const std::size_t n = rows.size(), width = z.peer / (2 * sp.plan.batch);
  for (int src = 0; src < sp.world; ++src) {
    for (std::size_t t = 0; t < n; ++t) {
      backend.copy_2d(rows[t] + src * width, z.chunk / sp.plan.batch, recv + (src * n + t) * z.peer,
                      width, width, 2 * sp.plan.batch, options);
    }
  }
}

}  // namespace

// ---- the context ------------------------------------------------------------------------------

class CpState final : public ContextState {
 public:
  CpState(const ShardPlan& sp, int rank, Backend& backend, void* stream, DType dtype)
      : sp(sp),
        attention(rows_plan(sp)),
        rank(rank),
        backend(backend),
        stream(stream),
        dtype(dtype) {
    const std::size_t heads = blocks_of(sp, dtype).heads;
    const auto rows = static_cast<std::size_t>(attention.batch * attention.heads * attention.S);
    Carver carve;
    const std::size_t at_sel = carve.take(cp::selection_bytes(sp));
    std::array<std::size_t, 4> at_rows{};
    for (auto& a : at_rows) a = carve.take(heads);
    const std::size_t at_stats = carve.take(rows * context_stats_size(dtype));
    base_ = static_cast<char*>(backend.allocate_on(carve.size(), stream));
    selection = base_ + at_sel;
    for (int t = 0; t < 4; ++t) sel[t] = base_ + at_rows[t];
    stats = base_ + at_stats;
  }
  CpState(const CpState&) = delete;
  CpState& operator=(const CpState&) = delete;
  ~CpState() override { backend.deallocate_on(base_, stream); }

  void copy_indices(std::int32_t* host_dst) const override {
    backend.synchronize_stream(stream);
    const std::vector<std::int32_t> idx =
        cp::selected_indices(sp, rank, backend.device(), selection);
    std::memcpy(host_dst, idx.data(), idx.size() * sizeof(std::int32_t));
  }

  const ShardPlan sp;
  const Plan attention;  // the dense attention over this rank's heads
  const int rank;
  Backend& backend;
  void* const stream;
  const DType dtype;
  char* selection = nullptr;
  std::array<char*, 4> sel{};  // q, k, v and the attention output of this rank's heads
  char* stats = nullptr;       // their softmax statistics

 private:
  char* base_ = nullptr;
};

int cp_world(const CpState& state) {
  return state.sp.world;
}

const CpState* as_cp_state(const ContextState& state) {
  return dynamic_cast<const CpState*>(&state);
}

std::size_t cp_index_count(const CpState& state) {
  return static_cast<std::size_t>(state.sp.plan.batch * state.sp.plan.heads * 2 *
                                  state.sp.chunk_rows);
}

std::shared_ptr<ContextState> cp_forward(const Config& config, const TensorView& q,
                                         const TensorView& k, const TensorView& v,
                                         const TensorView& out, const Options& options,
                                         const std::function<void()>& local_checks, Plan& plan) {
  Communicator& comm = *options.comm;
  check_comm(comm, q.device, options);  // a broken communicator cannot tell the others
  const int world = comm.size(), rank = comm.rank();
  const std::int64_t local_seq = q.shape[1];
  // This rank's checks; the ranks then compare their calls and stop together if any failed.
  std::exception_ptr rejected;
  ShardPlan sp;
  try {
    local_checks();
    if (local_seq % 2 != 0) {
      throw InvalidArgument("q", q.shape_string(),
                            "with context parallelism a rank holds two chunks of equal length: "
                            "its N (the sequence / cp) must be even");
    }
    sp = make_shard_plan(config, q.shape[0], local_seq * world, q.shape[2], q.shape[3], world);
    Backend& backend = backend_for(q.device);
    backend.check_supported(sp.plan, q.dtype);
    backend.check_supported(sp.chunk, q.dtype);
    backend.check_supported(rows_plan(sp), q.dtype);
  } catch (...) {
    rejected = std::current_exception();
  }
  CallRecord call;
  call.call = Call::kForward;
  call.shape = q.shape;
  call.config = config;
  call.scale = config.scale
                   ? *config.scale
                   : 1.0 / std::sqrt(static_cast<double>(std::max<std::int64_t>(q.shape[3], 1)));
  call.dtype = q.dtype;
  call.device = q.device;
  call.failed = rejected != nullptr;
  stop_if_any_failed(check_agreement(comm, call), rejected, rank);
  Backend& backend = backend_for(q.device);

  const DType dtype = q.dtype;
  const Blocks z = blocks_of(sp, dtype);
  auto state = std::make_shared<CpState>(sp, rank, backend, options.stream, dtype);
  CallBuffers buffers(backend, options.stream);
  CallClock clock(options, backend);
  const std::size_t local = 2 * z.chunk;  // one tensor's rows on this rank
  char* rows = buffers.take(3 * local);
  char* send = buffers.take(3 * local);
  char* recv = buffers.take(3 * local);

  cp::select_and_gather(sp, q, k, v, state->selection, rows, rows + local, rows + 2 * local,
                        clock.stage());
  clock.add();
  clock.communicate([&] {
    pack_rows(backend, sp, z, {rows, rows + local, rows + 2 * local}, send, options);
    comm.all_to_all(send, recv, 3 * z.peer);
    unpack_heads(backend, sp, z, recv, {state->sel[0], state->sel[1], state->sel[2]}, options);
  });
  backend.rows_attention_forward(state->attention, dtype, state->sel[0], state->sel[1],
                                 state->sel[2], state->sel[3], state->stats, clock.stage());
  clock.add();
  clock.communicate([&] {
    pack_heads(backend, sp, z, {state->sel[3]}, send, options);
    comm.all_to_all(send, recv, z.peer);
    unpack_rows(backend, sp, z, recv, {rows}, options);  // the outputs, now [2][B][H][S/2W][D]
  });
  char* all_edges = nullptr;
  if (sp.edge_levels > 0) {
    const std::size_t edge = 2 * cp::output_edge_bytes(sp, dtype);
    char* edges = buffers.take(edge);
    all_edges = buffers.take(edge * world);
    cp::output_edges(sp, q.device, dtype, state->selection, rows, edges, clock.stage());
    clock.add();
    clock.communicate([&] { comm.all_gather(edges, all_edges, edge); });
  }
  cp::scatter(sp, rank, state->selection, rows, all_edges, out, clock.stage());
  clock.add();
  plan = sp.plan;
  return state;
}

void cp_backward(const CpState& state, const TensorView& dout, const TensorView& dq,
                 const TensorView& dk, const TensorView& dv, const Options& options,
                 const std::function<void()>& local_checks) {
  const ShardPlan& sp = state.sp;
  if (!options.comm) {
    throw InvalidArgument(
        "comm", "null",
        "the forward ran with context parallelism over cp = " + std::to_string(sp.world) +
            " ranks: pass its communicator to backward() too");
  }
  Communicator& comm = *options.comm;
  check_comm(comm, dout.device, options);
  if (comm.size() != sp.world || comm.rank() != state.rank) {
    throw InvalidArgument(
        "comm", "rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size()),
        "must be the forward's communicator: rank " + std::to_string(state.rank) + " of " +
            std::to_string(sp.world));
  }
  std::exception_ptr rejected;
  try {
    local_checks();
    if (options.stream != state.stream) {
      throw InvalidArgument("stream", "another stream",
                            "must be the forward's stream with context parallelism");
    }
  } catch (...) {
    rejected = std::current_exception();
  }
  CallRecord call;
  call.call = Call::kBackward;
  call.shape = dout.shape;
  call.config = sp.plan.config;
  call.scale = sp.plan.scale;
  call.dtype = dout.dtype;
  call.device = dout.device;
  call.failed = rejected != nullptr;
  stop_if_any_failed(check_agreement(comm, call), rejected, state.rank);

  Backend& backend = state.backend;
  const DType dtype = state.dtype;
  const Blocks z = blocks_of(sp, dtype);
  const int world = sp.world;
  CallBuffers buffers(backend, options.stream);
  CallClock clock(options, backend);
  const std::size_t local = 2 * z.chunk;
  char* rows = buffers.take(3 * local);
  char* send = buffers.take(3 * local);
  char* recv = buffers.take(3 * local);
  std::array<char*, 4> heads{};  // do, dq, dk, dv of this rank's heads
  for (auto& h : heads) h = buffers.take(z.heads);

  char* all_edges = nullptr;
  if (sp.edge_tokens > 0) {
    const std::size_t edge = 2 * cp::dout_edge_bytes(sp, dtype);
    char* edges = buffers.take(edge);
    all_edges = buffers.take(edge * world);
    clock.communicate([&] {
      cp::dout_edges(sp, dout, edges, options);
      comm.all_gather(edges, all_edges, edge);
    });
  }
  cp::scatter_backward(sp, state.rank, state.selection, dout, all_edges, rows, clock.stage());
  clock.add();
  clock.communicate([&] {
    pack_rows(backend, sp, z, {rows}, send, options);
    comm.all_to_all(send, recv, z.peer);
    unpack_heads(backend, sp, z, recv, {heads[0]}, options);
  });
  backend.rows_attention_backward(state.attention, dtype, state.sel[0], state.sel[1], state.sel[2],
                                  state.sel[3], state.stats, heads[0], heads[1], heads[2], heads[3],
                                  clock.stage());
  clock.add();
  clock.communicate([&] {
    pack_heads(backend, sp, z, {heads[1], heads[2], heads[3]}, send, options);
    comm.all_to_all(send, recv, 3 * z.peer);
    unpack_rows(backend, sp, z, recv, {rows, rows + local, rows + 2 * local}, options);
  });
  cp::gather_backward(sp, state.selection, rows, rows + local, rows + 2 * local, dq, dk, dv,
                      clock.stage());
  clock.add();
}

}  // namespace lighthouse
