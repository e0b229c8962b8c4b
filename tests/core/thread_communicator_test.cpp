// The in-process communicator (W ranks as threads): what all_to_all and all_gather deliver, the
// bytes they count, and that a mismatch or a failing rank ends every rank with an error instead
// of a hang.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "lighthouse/communicator.hpp"
#include "lighthouse/error.hpp"

namespace {

using lighthouse::Communicator;

TEST(ThreadCommunicator, AllToAllAndAllGatherDeliverBlocksInRankOrder) {
  for (int world : {1, 2, 3, 4}) {
    SCOPED_TRACE(world);
    std::atomic<int> checked{0};
    lighthouse::run_thread_ranks(world, [&](Communicator& comm) {
      const int r = comm.rank(), w = comm.size();
      EXPECT_EQ(w, world);
      EXPECT_EQ(comm.device(), lighthouse::Device::kCPU);
      // Block j of rank r's send: 100 r + j, three ints each.
      std::vector<std::int32_t> send(3 * w), recv(3 * w, -1);
      for (int j = 0; j < w; ++j)
        for (int e = 0; e < 3; ++e) send[3 * j + e] = 100 * r + j + 1000 * e;
      comm.all_to_all(send.data(), recv.data(), 3 * sizeof(std::int32_t));
      for (int j = 0; j < w; ++j)
        for (int e = 0; e < 3; ++e) EXPECT_EQ(recv[3 * j + e], 100 * j + r + 1000 * e);
      std::vector<std::int64_t> mine{r, -r}, all(2 * w, 7);
      comm.all_gather(mine.data(), all.data(), 2 * sizeof(std::int64_t));
      for (int j = 0; j < w; ++j) {
        EXPECT_EQ(all[2 * j], j);
        EXPECT_EQ(all[2 * j + 1], -j);
      }
      // (W - 1) blocks left each rank per collective.
      const auto others = static_cast<std::int64_t>(w - 1);
      EXPECT_EQ(comm.stats().bytes_sent, others * (12 + 16));
      EXPECT_EQ(comm.stats().collectives, 2);
      ++checked;
    });
    EXPECT_EQ(checked.load(), world);
  }
}

// The trainer's gradient sum: every rank gets the sum in rank order, (x0 + x1) + x2 in float,
// the same bits everywhere; numbers chosen so that another order would round differently.
TEST(ThreadCommunicator, AllReduceSumAddsInRankOrderOnEveryRank) {
  const std::vector<float> values{1.0f, 1e8f, -1e8f};          // ranks 0, 1, 2
  const float in_order = (values[0] + values[1]) + values[2];  // 0: the 1 is lost in 1e8
  ASSERT_NE(in_order, values[0] + (values[1] + values[2]));    // the other order keeps it
  std::atomic<int> checked{0};
  lighthouse::run_thread_ranks(3, [&](Communicator& comm) {
    const int r = comm.rank();
    std::vector<float> data{values[r], static_cast<float>(r), 0.5f};
    comm.all_reduce_sum(data.data(), data.size());
    EXPECT_EQ(data[0], in_order);
    EXPECT_EQ(data[1], 3.0f);
    EXPECT_EQ(data[2], 1.5f);
    EXPECT_EQ(comm.stats().collectives, 1);
    std::vector<float> other(r == 1 ? 2 : 3);  // sizes differ: an error on every rank
    EXPECT_THROW(comm.all_reduce_sum(other.data(), other.size()), lighthouse::Error);
    ++checked;
  });
  EXPECT_EQ(checked.load(), 3);
}

TEST(ThreadCommunicator, DifferentCollectivesThrowOnEveryRank) {
  std::atomic<int> threw{0};
  try {
    lighthouse::run_thread_ranks(3, [&](Communicator& comm) {
      std::vector<char> send(64), recv(3 * 64);
      try {
        if (comm.rank() == 1) {
          comm.all_gather(send.data(), recv.data(), 8);
        } else {
          comm.all_to_all(send.data(), recv.data(), 8);
        }
      } catch (const lighthouse::Error& e) {
        ++threw;
        EXPECT_NE(std::string(e.what()).find("different collectives"), std::string::npos)
            << e.what();
        throw;
      }
    });
    ADD_FAILURE() << "no error";
  } catch (const lighthouse::Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 all_gather"), std::string::npos) << e.what();
  }
  EXPECT_EQ(threw.load(), 3);
}

TEST(ThreadCommunicator, AFailingRankReleasesTheWaitingOnesAndItsErrorIsRethrown) {
  std::atomic<int> aborted{0};
  try {
    lighthouse::run_thread_ranks(4, [&](Communicator& comm) {
      if (comm.rank() == 2) throw std::runtime_error("rank two gave up");
      std::vector<char> send(4 * 8), recv(4 * 8);
      try {
        comm.all_to_all(send.data(), recv.data(), 8);
      } catch (const lighthouse::Error& e) {
        ++aborted;
        EXPECT_NE(std::string(e.what()).find("rank two gave up"), std::string::npos) << e.what();
        throw;
      }
    });
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "rank two gave up");
  }
  EXPECT_EQ(aborted.load(), 3);
}

TEST(ThreadCommunicator, RejectsAWorldBelowOne) {
  EXPECT_THROW(lighthouse::make_thread_communicators(0), lighthouse::InvalidArgument);
  EXPECT_THROW(lighthouse::run_thread_ranks(-1, [](Communicator&) {}), lighthouse::InvalidArgument);
}

// Streams are per rank and for device memory only.
TEST(ThreadCommunicator, StreamsAreOnePerRankAndForDeviceMemory) {
  int a = 0, b = 0;
  const std::vector<void*> two{&a, &b};
  for (int world : {1, 2, 3}) {
    try {
      lighthouse::make_thread_communicators(world, lighthouse::Device::kCPU, two);
      ADD_FAILURE() << "accepted streams for host memory, world " << world;
    } catch (const lighthouse::InvalidArgument& e) {
      EXPECT_EQ(e.param(), "streams") << e.what();
    }
  }
  const auto host = lighthouse::make_thread_communicators(2);
  for (const auto& c : host) EXPECT_EQ(c->stream(), nullptr);
}

// Without NCCL the entry points say that it is missing; with it, a null ncclComm_t is refused.
TEST(NcclCommunicator, MissingNcclOrANullCommIsAClearError) {
  if (lighthouse::nccl_available()) {
    EXPECT_THROW(lighthouse::make_nccl_communicator(nullptr, nullptr), lighthouse::InvalidArgument);
    return;
  }
  for (int which = 0; which < 2; ++which) {
    try {
      if (which == 0) {
        lighthouse::make_nccl_communicator(nullptr, nullptr);
      } else {
        lighthouse::make_nccl_communicator_from_env("/nonexistent/id");
      }
      ADD_FAILURE() << "no error";
    } catch (const lighthouse::Error& e) {
      EXPECT_NE(std::string(e.what()).find("no NCCL communicator"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
