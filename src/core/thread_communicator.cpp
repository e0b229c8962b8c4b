// W ranks as threads of one process (communicator.hpp): the collectives of the CPU, for tests,
// the CLI and the trainer. A collective is two barriers: every rank posts its buffers, all
// check that they called the same collective with the same size, each copies what it receives
// straight out of the senders' buffers, and the second barrier keeps those buffers alive until
// everyone has read them (device buffers: copies on the rank's own stream, synchronised before
// and after, so that W ranks can share one GPU in tests). A rank that fails aborts the exchange:
// whoever waits in it, or comes later, throws instead of waiting forever.
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/backend.hpp"
#include "lighthouse/communicator.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse {

namespace {

enum class Kind { kAllToAll, kAllGather, kAllReduceSum };

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kAllToAll:
      return "all_to_all";
    case Kind::kAllGather:
      return "all_gather";
    case Kind::kAllReduceSum:
      return "all_reduce_sum";
  }
  return "?";
}

struct Post {
  Kind kind = Kind::kAllToAll;
  const void* send = nullptr;
  void* recv = nullptr;
  std::size_t bytes = 0;
};

class Exchange {
 public:
  Exchange(int world, Device device)
      : world_(world), device_(device), posts_(static_cast<std::size_t>(world)) {}

  int world() const { return world_; }
  Device device() const { return device_; }

  void run(int rank, const Post& post, bool host, void* stream) {
    // Device buffers: what the rank queued on its stream before the collective must be done
    // before anyone reads its send buffer.
    Backend* backend = host || device_ == Device::kCPU ? nullptr : &backend_for(device_);
    if (backend) backend->synchronize_stream(stream);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      posts_[rank] = post;
      wait_for_all(lock);
    }
    // Between the barriers the posts are read only. Every rank sees the same posts, so on a
    // mismatch every rank copies nothing, passes the second barrier and throws.
    std::string mismatch;
    for (int j = 0; j < world_ && mismatch.empty(); ++j) {
      const Post& other = posts_[j];
      if (other.kind != posts_[0].kind || other.bytes != posts_[0].bytes) {
        mismatch = "cp: the ranks called different collectives: rank 0 " +
                   std::string(kind_name(posts_[0].kind)) + " of " +
                   std::to_string(posts_[0].bytes) + " bytes, rank " + std::to_string(j) + " " +
                   kind_name(other.kind) + " of " + std::to_string(other.bytes) + " bytes";
      }
    }
    if (mismatch.empty() && post.kind == Kind::kAllReduceSum) {
      // Into this rank's own scratch (`recv`), in rank order: every rank adds the same floats in
      // the same order, so all get the same bits. `send` stays unchanged until the second
      // barrier (the others read it); the caller copies the sum back after it.
      auto* sum = static_cast<float*>(post.recv);
      const std::size_t n = post.bytes / sizeof(float);
      std::memcpy(sum, posts_[0].send, post.bytes);
      for (int j = 1; j < world_; ++j) {
        const auto* x = static_cast<const float*>(posts_[j].send);
        for (std::size_t i = 0; i < n; ++i) sum[i] += x[i];
      }
    } else if (mismatch.empty()) {
      auto* recv = static_cast<unsigned char*>(post.recv);
      for (int j = 0; j < world_; ++j) {
        const auto* send = static_cast<const unsigned char*>(posts_[j].send);
        const std::size_t from = post.kind == Kind::kAllToAll ? rank * post.bytes : 0;
        if (post.bytes == 0) continue;
        if (backend) {
          Options on_stream;
          on_stream.stream = stream;
          backend->copy_2d(recv + j * post.bytes, post.bytes, send + from, post.bytes, post.bytes,
                           1, on_stream);
        } else {
          std::memcpy(recv + j * post.bytes, send + from, post.bytes);
        }
      }
      if (backend) backend->synchronize_stream(stream);
    }
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wait_for_all(lock);
    }
    if (!mismatch.empty()) throw Error(mismatch);
  }

  void abort(const std::string& why) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!aborted_) {
      aborted_ = true;
      why_ = why;
    }
    changed_.notify_all();
  }

 private:
  void wait_for_all(std::unique_lock<std::mutex>& lock) {
    if (aborted_) throw RankFailed("cp: " + why_);
    const std::uint64_t generation = generation_;
    if (++arrived_ == world_) {
      arrived_ = 0;
      ++generation_;
      changed_.notify_all();
      return;
    }
    changed_.wait(lock, [&] { return generation_ != generation || aborted_; });
    if (generation_ == generation) throw RankFailed("cp: " + why_);
  }

  int world_;
  Device device_;
  std::vector<Post> posts_;
  std::mutex mutex_;
  std::condition_variable changed_;
  int arrived_ = 0;
  std::uint64_t generation_ = 0;
  bool aborted_ = false;
  std::string why_;
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<Exchange> exchange, int rank, void* stream)
      : exchange_(std::move(exchange)), rank_(rank), stream_(stream) {}

  int rank() const override { return rank_; }
  int size() const override { return exchange_->world(); }
  Device device() const override { return exchange_->device(); }
  void* stream() const override { return stream_; }

  void all_to_all(const void* send, void* recv, std::size_t bytes) override {
    exchange_->run(rank_, {Kind::kAllToAll, send, recv, bytes}, false, stream_);
    count(bytes);
  }
  void all_gather(const void* send, void* recv, std::size_t bytes) override {
    exchange_->run(rank_, {Kind::kAllGather, send, recv, bytes}, false, stream_);
    count(bytes);
  }
  void all_gather_host(const void* send, void* recv, std::size_t bytes) override {
    exchange_->run(rank_, {Kind::kAllGather, send, recv, bytes}, true, stream_);
    count(bytes);
  }

  // Host memory only: the trainer's CPU ranks. (Thread ranks on one GPU test the attention,
  // which never reduces.)
  void all_reduce_sum(float* data, std::size_t n) override {
    if (device() != Device::kCPU) {
      throw Error("all_reduce_sum: the thread communicator reduces host memory only");
    }
    std::vector<float> sum(n);
    exchange_->run(rank_, {Kind::kAllReduceSum, data, sum.data(), n * sizeof(float)}, true,
                   stream_);
    std::memcpy(data, sum.data(), n * sizeof(float));
    count(n * sizeof(float));
  }

  void abort(const std::string& why) { exchange_->abort(why); }

 private:
  std::shared_ptr<Exchange> exchange_;
  int rank_;
  void* stream_;
};

}  // namespace

void Communicator::all_reduce_sum(float*, std::size_t) {
  throw Error("all_reduce_sum: this communicator has no reduction");
}

std::vector<std::unique_ptr<Communicator>> make_thread_communicators(
    int world, Device device, const std::vector<void*>& streams) {
  if (world < 1) {
    throw InvalidArgument("cp", std::to_string(world), "must be >= 1 (ranks of the sequence)");
  }
  if (!streams.empty() && static_cast<int>(streams.size()) != world) {
    throw InvalidArgument("streams", std::to_string(streams.size()) + " streams",
                          "must be empty or one per rank (" + std::to_string(world) + ")");
  }
  if (!streams.empty() && device == Device::kCPU) {
    throw InvalidArgument("streams", std::to_string(streams.size()) + " streams",
                          "are for device memory (Device::kCUDA); the CPU has none");
  }
  if (device != Device::kCPU) backend_for(device);  // throws when the device is not there
  auto exchange = std::make_shared<Exchange>(world, device);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < world; ++r)
    comms.push_back(
        std::make_unique<ThreadCommunicator>(exchange, r, streams.empty() ? nullptr : streams[r]));
  return comms;
}

void run_thread_ranks(int world, const std::function<void(Communicator&)>& body, Device device,
                      const std::vector<void*>& streams) {
  auto comms = make_thread_communicators(world, device, streams);
  std::mutex mutex;
  std::exception_ptr first;  // the first failure; ranks aborted because of it come later
  bool first_is_abort = false;
  auto run = [&](int r) {
    try {
      body(*comms[r]);
    } catch (...) {
      bool aborted = false;
      std::string why = "rank " + std::to_string(r) + " failed";
      try {
        throw;
      } catch (const RankFailed&) {
        aborted = true;
      } catch (const std::exception& e) {
        why += ": " + std::string(e.what());
      } catch (...) {
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (!first || (first_is_abort && !aborted)) {
          first = std::current_exception();
          first_is_abort = aborted;
        }
      }
      static_cast<ThreadCommunicator&>(*comms[r]).abort(why);
    }
  };
  std::vector<std::thread> threads;
  for (int r = 1; r < world; ++r) threads.emplace_back(run, r);
  run(0);
  for (std::thread& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

void run_thread_rank_groups(
    int world, int group_size,
    const std::function<void(Communicator& world, Communicator& group)>& body) {
  if (group_size < 1 || world < 1 || world % group_size != 0) {
    throw InvalidArgument(
        "world", std::to_string(world),
        "must be a positive multiple of the group size (" + std::to_string(group_size) + ")");
  }
  std::vector<std::vector<std::unique_ptr<Communicator>>> groups;
  for (int g = 0; g < world / group_size; ++g)
    groups.push_back(make_thread_communicators(group_size));
  // run_thread_ranks aborts the world's exchange when a rank throws; the group's is aborted here,
  // so that its other ranks do not wait in a group collective forever.
  run_thread_ranks(world, [&](Communicator& comm) {
    auto& group = static_cast<ThreadCommunicator&>(
        *groups[comm.rank() / group_size][comm.rank() % group_size]);
    try {
      body(comm, group);
    } catch (const std::exception& e) {
      group.abort("rank " + std::to_string(comm.rank()) + " failed: " + e.what());
      throw;
    } catch (...) {
      group.abort("rank " + std::to_string(comm.rank()) + " failed");
      throw;
    }
  });
}

}  // namespace lighthouse
