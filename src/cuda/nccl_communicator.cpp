// The NCCL communicator (communicator.hpp): the collectives of context parallelism on GPUs,
// queued on one stream. all_to_all is a group of point-to-point sends and receives (NCCL's own
// all-to-all pattern), all_gather is ncclAllGather, both on bytes (ncclInt8).
// Built where CMake found NCCL (LIGHTHOUSE_WITH_NCCL); src/core/nccl_unavailable.cpp otherwise.
#ifdef LIGHTHOUSE_WITH_NCCL

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <unistd.h>

#include "cuda/check.hpp"
#include "lighthouse/communicator.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse {

namespace {

void check_nccl(ncclResult_t status, const char* call) {
  if (status != ncclSuccess) {
    throw Error(std::string("NCCL: ") + call + " failed: " + ncclGetErrorString(status));
  }
}
#define NCCL_CHECK(call) check_nccl((call), #call)

class NcclCommunicator final : public Communicator {
 public:
  // owned: destroys the comm and the stream; owns_comm: the comm only (a group split off a
  // world communicator, on the world's stream).
  NcclCommunicator(ncclComm_t comm, cudaStream_t stream, bool owned, bool owns_comm = false)
      : comm_(comm), stream_(stream), owned_(owned), owns_comm_(owned || owns_comm) {
    NCCL_CHECK(ncclCommCount(comm_, &size_));
    NCCL_CHECK(ncclCommUserRank(comm_, &rank_));
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;
  ~NcclCommunicator() override {
    if (!owns_comm_) return;
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
    if (owned_) cudaStreamDestroy(stream_);
  }

  ncclComm_t comm() const { return comm_; }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Device device() const override { return Device::kCUDA; }
  void* stream() const override { return stream_; }

  void all_to_all(const void* send, void* recv, std::size_t bytes) override {
    const auto* s = static_cast<const char*>(send);
    auto* r = static_cast<char*>(recv);
    NCCL_CHECK(ncclGroupStart());
    for (int peer = 0; peer < size_; ++peer) {
      NCCL_CHECK(ncclSend(s + peer * bytes, bytes, ncclInt8, peer, comm_, stream_));
      NCCL_CHECK(ncclRecv(r + peer * bytes, bytes, ncclInt8, peer, comm_, stream_));
    }
    NCCL_CHECK(ncclGroupEnd());
    count(bytes);
  }

  void all_gather(const void* send, void* recv, std::size_t bytes) override {
    NCCL_CHECK(ncclAllGather(send, recv, bytes, ncclInt8, comm_, stream_));
    count(bytes);
  }

  void all_reduce_sum(float* data, std::size_t n) override {
    NCCL_CHECK(ncclAllReduce(data, data, n, ncclFloat32, ncclSum, comm_, stream_));
    count(n * sizeof(float));
  }

  // Through device memory: NCCL moves device buffers only. Waits for the stream.
  void all_gather_host(const void* send, void* recv, std::size_t bytes) override {
    char* staged = nullptr;
    const std::size_t total = bytes * static_cast<std::size_t>(size_ + 1);
    CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&staged), total, stream_));
    CUDA_CHECK(cudaMemcpyAsync(staged, send, bytes, cudaMemcpyHostToDevice, stream_));
    all_gather(staged, staged + bytes, bytes);
    CUDA_CHECK(
        cudaMemcpyAsync(recv, staged + bytes, bytes * size_, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaFreeAsync(staged, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

 private:
  ncclComm_t comm_;
  cudaStream_t stream_;
  bool owned_, owns_comm_;
  int size_ = 0, rank_ = 0;
};

int env_int(const char* name, int fallback, bool required) {
  const char* text = std::getenv(name);
  if (!text || !*text) {
    if (required) throw Error(std::string("NCCL from the environment: ") + name + " is not set");
    return fallback;
  }
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < 0 || value > 1 << 20) {
    throw Error(std::string("NCCL from the environment: ") + name + " = '" + text +
                "' is not a rank number");
  }
  return static_cast<int>(value);
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(void* nccl_comm, void* stream) {
  if (!nccl_comm) throw InvalidArgument("nccl_comm", "null", "must be an initialised ncclComm_t");
  return std::make_unique<NcclCommunicator>(static_cast<ncclComm_t>(nccl_comm),
                                            static_cast<cudaStream_t>(stream), false);
}

std::unique_ptr<Communicator> make_nccl_communicator_from_env(const std::string& id_file,
                                                              double timeout_s) {
  // Unset: this process alone (a one-rank communicator).
  const int world = env_int("WORLD_SIZE", 1, false);
  const int rank = env_int("RANK", 0, false);
  const int local = env_int("LOCAL_RANK", rank, false);
  if (world < 1 || rank >= world) {
    throw Error("NCCL from the environment: RANK = " + std::to_string(rank) +
                " must be below WORLD_SIZE = " + std::to_string(world));
  }
  CUDA_CHECK(cudaSetDevice(local));
  ncclUniqueId id{};
  namespace fs = std::filesystem;
  if (rank == 0) {
    NCCL_CHECK(ncclGetUniqueId(&id));
    const std::string tmp = id_file + ".tmp" + std::to_string(::getpid());
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      f.write(id.internal, sizeof id.internal);
      if (!f) throw Error("NCCL from the environment: cannot write " + tmp);
    }
    fs::rename(tmp, id_file);
  } else {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (true) {
      std::ifstream f(id_file, std::ios::binary);
      if (f && f.read(id.internal, sizeof id.internal)) break;
      if (std::chrono::steady_clock::now() > deadline) {
        throw Error("NCCL from the environment: rank " + std::to_string(rank) + " found no id in " +
                    id_file + " after " + std::to_string(timeout_s) + " s (rank 0 writes it)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ncclComm_t comm = nullptr;
  NCCL_CHECK(ncclCommInitRank(&comm, world, id, rank));
  // Every rank has read the id once init returns: a later job must not find this one's.
  if (rank == 0) {
    std::error_code ignored;
    fs::remove(id_file, ignored);
  }
  cudaStream_t stream = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return std::make_unique<NcclCommunicator>(comm, stream, true);
}

std::unique_ptr<Communicator> split_nccl_communicator(Communicator& world, int group_size) {
  auto* nccl = dynamic_cast<NcclCommunicator*>(&world);
  if (nccl == nullptr) {
    throw Error("split_nccl_communicator: the world communicator is not an NCCL communicator");
  }
  if (group_size < 1 || world.size() % group_size != 0) {
    throw InvalidArgument("group_size", std::to_string(group_size),
                          "must divide the world's " + std::to_string(world.size()) + " ranks");
  }
  // ncclCommSplit is collective over the world and waits for every rank; nothing of this rank's
  // queued work on the stream is touched.
  ncclComm_t group = nullptr;
  NCCL_CHECK(ncclCommSplit(nccl->comm(), world.rank() / group_size, world.rank() % group_size,
                           &group, nullptr));
  if (group == nullptr) throw Error("split_nccl_communicator: ncclCommSplit gave no communicator");
  return std::make_unique<NcclCommunicator>(group, static_cast<cudaStream_t>(world.stream()), false,
                                            true);
}

bool nccl_available() {
  return true;
}

}  // namespace lighthouse

#endif  // LIGHTHOUSE_WITH_NCCL
