// `lighthouse train --device cuda --cp W` on one GPU (issue 15: the single-GPU path with W = 1):
// a real one-rank NCCL communicator from the environment (RANK and WORLD_SIZE unset: rank 0 of 1)
// carries the attention's CP collectives, the row losses and the gradient all-reduce, and the
// run trains like one without --cp; --cp 2 in one process is a clear error; the split into
// data-parallel groups on a one-rank world. Multi-GPU runs
// (torchrun, W = 2..8) are scripts/gpu-cp-check's (issue 16). Each test skips where no CUDA
// device is usable, the build has no CUDA model, or no NCCL.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <cuda_runtime.h>
#include <nlohmann/json.hpp>

#include "lighthouse/communicator.hpp"
#include "support/cli_run.hpp"
#include "support/require_gpu.hpp"
#include "train/language_model.hpp"

namespace {

namespace fs = std::filesystem;

class CpTrainerGpu : public lighthouse::testing::GpuTest {
 protected:
  void SetUp() override {
    GpuTest::SetUp();
    if (IsSkipped()) return;
    if (!lighthouse::train::cuda_model_available()) {
      GTEST_SKIP() << "this build has no CUDA model (src/train/cuda)";
    }
    if (!lighthouse::nccl_available()) GTEST_SKIP() << "this build has no NCCL";
    dir_.emplace("lighthouse-train-cp-gpu");
  }
  std::string path(const std::string& name) const { return *dir_ / name; }

  using Result = lhtest::CliResult;
  // torchrun's variables unset: one process, rank 0 of 1.
  Result train(const std::string& args) const {
    return lhtest::run_cli(dir_->path(), "train " + args,
                           "env -u RANK -u WORLD_SIZE -u LOCAL_RANK");
  }
  std::optional<lhtest::TempDir> dir_;  // made once the test is known to run
};

std::vector<double> step_losses(const std::string& file) {
  std::ifstream in(file);
  std::vector<double> out;
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["type"] == "step") out.push_back(j["loss"].get<double>());
  }
  return out;
}

// 3 Lighthouse steps (L2 p2 K512: 4 tiles, whole tiles in both chunks) and 2 dense, fp32.
constexpr const char* kRun =
    "--device cuda --precision fp32 --deterministic on --stage1-steps 3 --stage2-steps 2 "
    "--seq 2048 --levels 2 --pool 2 --topk 512 --selection original --dim 64 --layers 2 "
    "--heads 2 --corpus-tokens 50k --eval-every 0 --eval-batches 1 --passkey-trials 1 "
    "--sgemm-size 0";

TEST_F(CpTrainerGpu, OneRankOverNcclTrainsLikeNoContextParallelism) {
  const Result plain = train(std::string(kRun) + " --metrics '" + path("plain.jsonl") + "'");
  ASSERT_EQ(plain.status, 0) << plain.err;
  const Result cp = train(std::string(kRun) + " --cp 1 --metrics '" + path("cp.jsonl") + "'");
  ASSERT_EQ(cp.status, 0) << cp.err;
  const auto a = step_losses(path("plain.jsonl")), b = step_losses(path("cp.jsonl"));
  ASSERT_EQ(a.size(), 5u);
  ASSERT_EQ(b.size(), a.size());
  // One rank holds chunks 0 and 1 in order: the same rows; the attention runs the CP path (the
  // rows attention over all heads) instead of the single-device one: equal to its rounding.
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_LT(std::abs(a[i] - b[i]), 1e-4 * a[i]) << "step " << i + 1;
  }
}

TEST_F(CpTrainerGpu, MoreRanksThanProcessesIsAClearError) {
  const Result r = train(std::string(kRun) + " --cp 2 --metrics '" + path("m.jsonl") + "'");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("--cp = 2: must divide the number of processes (WORLD_SIZE = 1)"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(path("m.jsonl")));
}

// Data parallelism's split (WORLD_SIZE = D * W > W; the multi-GPU runs are gpu-cp-check's): on a
// one-rank world the group of one is a real NCCL communicator of its own, on the world's stream,
// whose all-reduce works; a group size that does not divide the world is a named error.
TEST_F(CpTrainerGpu, SplitIntoGroupsOnTheWorldsStream) {
  ::unsetenv("RANK");
  ::unsetenv("WORLD_SIZE");
  ::unsetenv("LOCAL_RANK");
  auto world = lighthouse::make_nccl_communicator_from_env(path("nccl.id"));
  auto group = lighthouse::split_nccl_communicator(*world, 1);
  EXPECT_EQ(group->size(), 1);
  EXPECT_EQ(group->rank(), 0);
  EXPECT_EQ(group->stream(), world->stream());
  float* data = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&data), 4 * sizeof(float)), cudaSuccess);
  const float host[4] = {1, 2, 3, 4};
  ASSERT_EQ(cudaMemcpy(data, host, sizeof host, cudaMemcpyHostToDevice), cudaSuccess);
  group->all_reduce_sum(data, 4);
  world->all_reduce_sum(data, 4);
  float back[4] = {};
  ASSERT_EQ(cudaStreamSynchronize(static_cast<cudaStream_t>(world->stream())), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(back, data, sizeof back, cudaMemcpyDeviceToHost), cudaSuccess);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(back[i], host[i]);  // one rank: the sum is itself
  cudaFree(data);
  try {
    lighthouse::split_nccl_communicator(*world, 2);
    FAIL() << "expected InvalidArgument naming group_size";
  } catch (const lighthouse::InvalidArgument& e) {
    EXPECT_EQ(e.param(), "group_size") << e.what();
  }
  group.reset();  // before the world, whose stream it uses
}

}  // namespace
