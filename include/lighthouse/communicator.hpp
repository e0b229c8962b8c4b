// How the ranks of a context-parallel call talk to each other (context_parallel.hpp): a small
// interface with two collectives, and its implementations: W ranks as threads of one process
// (the CPU; tests, the CLI) and NCCL over a communicator and stream the caller owns (CUDA).
//
// Every rank of a group calls the same collectives in the same order with the same sizes.
// Buffers live on device() (host memory for the thread communicator, device memory for NCCL);
// on CUDA the collectives are queued on the communicator's stream, which the caller orders
// against its own work (the library passes Options::stream; see make_nccl_communicator).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lighthouse/error.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse {

// Thrown on a rank whose collective call cannot go on because another rank of the group failed
// (it rejected its inputs, or threw while the others waited). run_thread_ranks() rethrows the
// failing rank's own exception rather than this one.
class RankFailed : public Error {
 public:
  using Error::Error;
};

// What one rank has sent so far: the bytes that left it for other ranks ((W - 1) blocks per
// all_to_all or all_gather) and the number of collectives.
struct CommStats {
  std::int64_t bytes_sent = 0;
  std::int64_t collectives = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Where the buffers of all_to_all and all_gather live.
  virtual Device device() const = 0;

  // Block j of `send` (bytes [j * bytes, (j + 1) * bytes)) goes to rank j, which stores it as
  // block rank() of its `recv`. Both buffers hold size() * bytes.
  virtual void all_to_all(const void* send, void* recv, std::size_t bytes) = 0;
  // Every rank's `bytes` of `send`, in rank order, into `recv` (size() * bytes).
  virtual void all_gather(const void* send, void* recv, std::size_t bytes) = 0;
  // all_gather of host memory, complete when it returns: the small exchanges the library makes
  // on the host (the agreement check at the start of every call).
  virtual void all_gather_host(const void* send, void* recv, std::size_t bytes) = 0;
  // In place: every rank's `data` becomes the element-wise sum over the ranks of their `data`
  // (`count` floats on device()). The trainer sums its weight gradients with it. The thread
  // communicator adds in rank order ((x0 + x1) + x2 ...: the same bits on every rank and every
  // run); NCCL is ncclAllReduce on the stream. The default throws: a communicator that has no
  // reduction.
  virtual void all_reduce_sum(float* data, std::size_t count);
  // Whether the device-memory collectives were queued on `stream` (CUDA): the library then
  // orders nothing itself. The thread communicator runs everything at once and ignores streams.
  virtual void* stream() const { return nullptr; }

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 protected:
  void count(std::size_t block_bytes) {
    stats_.bytes_sent += static_cast<std::int64_t>(block_bytes) * (size() - 1);
    ++stats_.collectives;
  }

 private:
  CommStats stats_;
};

// W communicators over one shared in-process exchange, ranks 0..W-1, for W threads of this
// process. A collective waits for every rank; all ranks must call the same collectives with the
// same sizes, else each of them throws lighthouse::Error naming the mismatch (never a hang).
// world >= 1, else InvalidArgument naming `cp`. `device`: where the buffers live; kCUDA lets W
// ranks share one GPU (tests): the collectives then copy device to device on the rank's stream
// (`streams`: one per rank, the caller's, kept alive longer than the communicators; rank r's is
// its stream(), which its calls pass as Options::stream) and synchronise it. Ranks that run
// concurrently on one GPU need streams of their own (the library's workspaces are per stream);
// empty: every rank on the default stream.
std::vector<std::unique_ptr<Communicator>> make_thread_communicators(
    int world, Device device = Device::kCPU, const std::vector<void*>& streams = {});

// Runs body(comm) for rank 0..world-1, each on a thread of its own with a thread communicator,
// and returns when all are done. When a rank throws, the collectives the others are waiting in
// (or enter later) throw RankFailed, and the first exception other than RankFailed is rethrown
// here.
void run_thread_ranks(int world, const std::function<void(Communicator&)>& body,
                      Device device = Device::kCPU, const std::vector<void*>& streams = {});

// run_thread_ranks on the CPU with groups (data parallelism across context-parallel groups):
// world ranks as threads, and the ranks [g * group_size, (g + 1) * group_size) also share a
// communicator of their own, on which rank r is r % group_size. body(world, group) runs once per
// rank. A rank that throws aborts the world's exchange and its group's, so nobody waits forever.
// InvalidArgument naming "world" when group_size (>= 1) does not divide world (>= 1).
void run_thread_rank_groups(
    int world, int group_size,
    const std::function<void(Communicator& world, Communicator& group)>& body);

// NCCL over the caller's `nccl_comm` (an ncclComm_t) and `stream` (a cudaStream_t, null = the
// default stream): the collectives are queued on that stream; the caller keeps both alive
// longer than the communicator. Library calls that use it must run with Options::stream ==
// `stream`. Throws lighthouse::Error in a build without NCCL.
std::unique_ptr<Communicator> make_nccl_communicator(void* nccl_comm, void* stream);

// One process per GPU, as torchrun starts them: rank and world from RANK and WORLD_SIZE (unset:
// this process alone, rank 0 of 1), the GPU from LOCAL_RANK (cudaSetDevice), the NCCL unique id
// passed through `id_file` (rank 0 writes it atomically, the others wait up to `timeout_s` seconds
// for it; use a fresh name per job). The communicator owns its ncclComm_t and a stream of its own
// (stream()). Throws lighthouse::Error when the variables are missing or malformed, the file does
// not appear, or the build has no NCCL.
std::unique_ptr<Communicator> make_nccl_communicator_from_env(const std::string& id_file,
                                                              double timeout_s = 120);

// The groups of `group_size` consecutive ranks of `world` (an NCCL communicator made by the two
// functions above), through ncclCommSplit: this rank's group is world.rank() / group_size and its
// rank there world.rank() % group_size. The group's collectives are queued on world's stream
// (world must outlive the result). Collective: every rank of world calls it. InvalidArgument
// naming "group_size" when it does not divide world.size(); lighthouse::Error for a communicator
// that is not NCCL's or a build without NCCL.
std::unique_ptr<Communicator> split_nccl_communicator(Communicator& world, int group_size);

// Whether this build can make NCCL communicators.
bool nccl_available();

}  // namespace lighthouse
