// `--cp W` of the `lighthouse` binary: `attention --cp W` (W ranks as threads) writes the files of
// a single-device run byte for byte; bad values exit 2 naming --cp and write nothing; `plan --cp
// W` prints the traffic of this design against Ulysses (the issue's numbers, in JSON too).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lighthouse/npy.hpp"
#include "support/cli_run.hpp"

namespace fs = std::filesystem;

namespace {

using Result = lhtest::CliResult;
using lhtest::read_file;

class CpCli : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return dir_ / name; }
  Result run(const std::string& args) const { return lhtest::run_cli(dir_.path(), args); }
  // q, k, v, dout of shape [B, N, H, D], random normal (q and k rows with varied norms).
  std::string write_inputs(std::int64_t B, std::int64_t N, std::int64_t H, std::int64_t D) {
    std::mt19937 gen(11);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const std::vector<std::int64_t> shape{B, N, H, D};
    for (const char* name : {"q", "k", "v", "dout"}) {
      std::vector<float> x(static_cast<std::size_t>(B * N * H * D));
      for (std::size_t row = 0; row < x.size() / D; ++row) {
        const float gain = name[0] == 'q' || name[0] == 'k' ? std::exp(0.5f * normal(gen)) : 1.0f;
        for (std::int64_t d = 0; d < D; ++d) x[row * D + d] = gain * normal(gen);
      }
      lighthouse::write_npy(path(std::string(name) + ".npy"), lighthouse::DType::kFloat32, shape,
                            x.data());
    }
    return " --q '" + path("q.npy") + "' --k '" + path("k.npy") + "' --v '" + path("v.npy") +
           "' --dout '" + path("dout.npy") + "'";
  }
  lhtest::TempDir dir_{"lighthouse-cp-cli"};
};

const char* const kFiles[] = {"out.npy", "indices.npy", "dq.npy", "dk.npy", "dv.npy"};

TEST_F(CpCli, AttentionWritesTheSameFilesBitForBit) {
  const std::string in = write_inputs(1, 2048, 4, 16);
  struct Config {
    std::string flags;
    std::vector<int> worlds;
  };
  // L2 p2 K1024: 8 tiles, cp up to 4; dense: any cp dividing H = 4.
  for (const Config& c : {Config{" --levels 2 --pool 2 --topk 1024", {1, 2, 4}},
                          Config{" --levels 1 --pool 2 --topk 128", {2}}}) {
    const std::string single = path("single");
    Result r = run("attention" + in + c.flags + " --threads 2 --out '" + single + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    for (int world : c.worlds) {
      SCOPED_TRACE(c.flags + " --cp " + std::to_string(world));
      const std::string sharded = path("cp" + std::to_string(world));
      r = run("attention" + in + c.flags + " --threads 2 --cp " + std::to_string(world) +
              " --out '" + sharded + "'");
      ASSERT_EQ(r.status, 0) << r.err;
      for (const char* file : kFiles) {
        const std::string a = read_file(fs::path(single) / file), b = read_file(fs::path(sharded) / file);
        EXPECT_FALSE(a.empty()) << file;
        EXPECT_TRUE(a == b) << file << " differs from the single-device run";
      }
      fs::remove_all(sharded);
    }
    fs::remove_all(single);
  }
}

TEST_F(CpCli, BadCpExitsTwoNamesTheFlagAndWritesNothing) {
  const std::string in = write_inputs(1, 2048, 4, 16);
  struct Bad {
    std::string flags, message;
  };
  const Bad cases[] = {
      {" --levels 3 --pool 2 --topk 512 --cp 4", "--cp = 4: each of the 2 x cp = 8 chunks"},
      {" --levels 2 --pool 2 --topk 1024 --cp 3", "--cp = 3: must divide the number of heads"},
      {" --levels 2 --pool 2 --topk 1024 --cp 0", "--cp = 0"},
      {" --levels 2 --pool 2 --topk 1024 --cp 2 --device cuda", "--cp = 2: runs its ranks"},
      {" --levels 2 --pool 2 --topk 1024 --cp 2 --selection causal",
       "--selection = causal: context parallelism supports selection = original only"},
  };
  for (const Bad& bad : cases) {
    SCOPED_TRACE(bad.flags);
    const std::string out = path("out");
    const Result r = run("attention" + in + bad.flags + " --threads 1 --out '" + out + "'");
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find(bad.message), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(fs::path(out) / "out.npy"));
  }
}

TEST_F(CpCli, PlanPrintsTheTrafficOfThisDesignAgainstUlysses) {
  const std::string issue =
      "plan --seq 512k --levels 3 --pool 4 --topk 4096 --heads 8 --head-dim 128";
  Result r = run(issue + " --cp 2");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* text :
       {"context parallelism: cp = 2 ranks, 4 chunks of 131072 tokens", "all-to-all q, k, v; out",
        "128.0 MiB", "1.0 GiB", "8.0x", "valid: yes"}) {
    EXPECT_NE(r.out.find(text), std::string::npos) << text << "\n" << r.out;
  }
  r = run(issue + " --cp 8 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto& fwd = j.at("context_parallel").at("bytes_sent_per_rank").at("forward");
  EXPECT_EQ(fwd.at("all_to_all").get<std::int64_t>(), std::int64_t{56} << 20);
  EXPECT_EQ(fwd.at("ulysses").get<std::int64_t>(), std::int64_t{448} << 20);
  EXPECT_EQ(j.at("context_parallel").at("heads_per_rank").get<int>(), 1);
  r = run(issue + " --cp 3");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("valid: no"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("--cp = 3"), std::string::npos) << r.err;
}

TEST_F(CpCli, BenchReportsTheMeasuredBytesAndTheCollectivesTime) {
  const std::string json = path("bench.json");
  const Result r = run(
      "bench --cp 2 --seq 8192 --batch 1 --heads 2 --head-dim 16 --levels 2 --pool 4 --topk 512 "
      "--impl dense,lighthouse --repeats 1 --warmup 0 --threads 2 --sgemm-size 0 --json '" +
      json + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("lighthouse bench --cp 2"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(read_file(json));
  EXPECT_EQ(j.at("cp").get<int>(), 2);
  int lighthouse = 0, dense = 0;
  for (const auto& row : j.at("rows")) {
    SCOPED_TRACE(row.dump());
    ASSERT_FALSE(row.contains("error"));
    const std::string impl = row.at("impl").get<std::string>();
    lighthouse += impl == "lighthouse";
    dense += impl == "dense";
    // Bytes counted by the communicator as they left the rank = the plan's estimate.
    EXPECT_EQ(row.at("bytes_sent_fwd").get<std::int64_t>(),
              row.at("estimate_fwd").get<std::int64_t>());
    EXPECT_EQ(row.at("bytes_sent_bwd").get<std::int64_t>(),
              row.at("estimate_bwd").get<std::int64_t>());
    EXPECT_GT(row.at("bytes_sent_fwd").get<std::int64_t>(), 0);
    EXPECT_GE(row.at("collective_fwd_ms").get<double>(), 0.0);
    EXPECT_GT(row.at("fwd_bwd_ms").get<double>(), 0.0);
    // Lighthouse moves the gathered rows (S < N), dense (Ulysses) the tokens.
    if (impl == "lighthouse") {
      EXPECT_LT(row.at("bytes_sent_fwd").get<std::int64_t>(),
                row.at("ulysses_estimate_fwd").get<std::int64_t>());
    }
  }
  EXPECT_EQ(lighthouse, 1);
  EXPECT_EQ(dense, 1);
  const Result bad = run("bench --cp 3 --seq 2048 --heads 2 --levels 2 --pool 2 --topk 512");
  EXPECT_EQ(bad.status, 2) << bad.err;
  EXPECT_NE(bad.err.find("--cp"), std::string::npos) << bad.err;
}

}  // namespace
