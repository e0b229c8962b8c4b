// `lighthouse attention --cu-seqlens FILE.npy` (packed documents): the files equal separate runs
// of each document bit for bit, and bad offsets are usage errors (status 2, the flag named, no
// output).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "lighthouse/lighthouse.hpp"
#include "lighthouse/npy.hpp"
#include "support/cli_run.hpp"

namespace fs = std::filesystem;

namespace {

using lighthouse::DType;

std::vector<float> random_values(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(n);
  for (float& e : x) e = normal(gen);
  return x;
}

std::vector<float> read_floats(const std::string& path) {
  const lighthouse::NpyArray a = lighthouse::read_npy(path);
  return std::vector<float>(a.data<float>(), a.data<float>() + a.numel());
}

constexpr std::int64_t kN = 1200, kH = 2, kD = 8;
const char* const kConfig = " --levels 2 --pool 2 --topk 128 --selection causal";

TEST(CliPacked, AttentionEqualsSeparateRunsOfEachDocument) {
  lhtest::TempDir dir("lighthouse-packed-test");
  const std::vector<std::int32_t> cu{0, 1, 300, 701, kN};  // lengths 1, 299, 401, 499
  const std::int64_t row = kH * kD;
  std::vector<std::vector<float>> inputs;
  const char* names[] = {"q", "k", "v", "dout"};
  for (unsigned t = 0; t < 4; ++t) {
    inputs.push_back(random_values(static_cast<std::size_t>(kN * row), t + 1));
    lighthouse::write_npy(dir / (std::string(names[t]) + ".npy"), DType::kFloat32, {1, kN, kH, kD},
                          inputs.back().data());
  }
  lighthouse::write_npy(dir / "cu.npy", DType::kInt32, {static_cast<std::int64_t>(cu.size())},
                        cu.data());
  const std::string files = " --q " + (dir / "q.npy") + " --k " + (dir / "k.npy") + " --v " +
                            (dir / "v.npy") + " --dout " + (dir / "dout.npy");
  const lhtest::CliResult packed =
      lhtest::run_cli(dir.path(), "attention" + files + kConfig + " --cu-seqlens " +
                                      (dir / "cu.npy") + " --out " + (dir / "packed"));
  ASSERT_EQ(packed.status, 0) << packed.err;
  EXPECT_EQ(lighthouse::read_npy(dir / "packed/indices.npy").shape.size(), 1u);
  for (std::size_t i = 0; i + 1 < cu.size(); ++i) {
    SCOPED_TRACE("document " + std::to_string(i));
    const std::int64_t len = cu[i + 1] - cu[i];
    const std::string doc = dir / ("doc" + std::to_string(i));
    fs::create_directories(doc);
    for (unsigned t = 0; t < 4; ++t) {
      lighthouse::write_npy(doc + "/" + names[t] + ".npy", DType::kFloat32, {1, len, kH, kD},
                            inputs[t].data() + cu[i] * row);
    }
    const lhtest::CliResult alone = lhtest::run_cli(
        dir.path(), "attention --q " + doc + "/q.npy --k " + doc + "/k.npy --v " + doc +
                        "/v.npy --dout " + doc + "/dout.npy" + kConfig + " --out " + doc + "/out");
    ASSERT_EQ(alone.status, 0) << alone.err;
    for (const char* result : {"out", "dq", "dk", "dv"}) {
      const std::vector<float> whole =
          read_floats(dir / ("packed/" + std::string(result) + ".npy"));
      const std::vector<float> part = read_floats(doc + "/out/" + result + ".npy");
      ASSERT_EQ(part.size(), static_cast<std::size_t>(len * row));
      EXPECT_EQ(std::memcmp(whole.data() + cu[i] * row, part.data(), part.size() * sizeof(float)),
                0)
          << result;
    }
  }
}

TEST(CliPacked, BadOffsetsExitTwoNameTheFlagAndLeaveNoOutput) {
  lhtest::TempDir dir("lighthouse-packed-test");
  const std::vector<float> x = random_values(static_cast<std::size_t>(2 * kN * kH * kD), 9);
  for (const char* name : {"q", "k", "v"}) {
    lighthouse::write_npy(dir / (std::string(name) + ".npy"), DType::kFloat32, {2, kN, kH, kD},
                          x.data());
  }
  const std::string files =
      " --q " + (dir / "q.npy") + " --k " + (dir / "k.npy") + " --v " + (dir / "v.npy");
  auto offsets32 = [&](const std::string& name, const std::vector<std::int32_t>& cu) {
    lighthouse::write_npy(dir / name, DType::kInt32, {static_cast<std::int64_t>(cu.size())},
                          cu.data());
    return dir / name;
  };
  const std::vector<std::int64_t> wide{0, kN, 2 * kN};
  lighthouse::write_npy(dir / "wide.npy", DType::kInt64, {3}, wide.data());
  const std::vector<std::int32_t> square{0, 0, 0, 0};
  lighthouse::write_npy(dir / "square.npy", DType::kInt32, {2, 2}, square.data());
  struct Bad {
    std::string file, extra, says;
  };
  const std::vector<Bad> bad{
      {dir / "missing.npy", "", "no such file"},
      {dir / "wide.npy", "", "int32 offsets are required"},
      {dir / "square.npy", "", "must be 1-D"},
      {offsets32("down.npy", {0, 500, 400, 2 * kN}), "", "strictly increasing"},
      {offsets32("short.npy", {0, kN, kN + 5}), "", "must end at B * N"},
      {offsets32("first.npy", {1, kN, 2 * kN}), "", "must start at 0"},
      {offsets32("straddle.npy", {0, 1000, 2 * kN}), "", "straddle"},
      {offsets32("ok.npy", {0, kN, 2 * kN}), " --cp 2", "context parallelism"},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.file + b.extra);
    const std::string out = dir / "out";
    const lhtest::CliResult r =
        lhtest::run_cli(dir.path(), "attention" + files + kConfig + " --cu-seqlens " + b.file +
                                        b.extra + " --out " + out);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find("--cu-seqlens"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(b.says), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out + "/out.npy"));
  }
}

}  // namespace

namespace {

// `lighthouse bench --packed-docs LEN`: one row per N with both comparisons, the JSON rows, and
// a bad LEN as a usage error.
TEST(CliPacked, BenchReportsPackingAndPadding) {
  lhtest::TempDir dir("lighthouse-packed-test");
  const lhtest::CliResult r =
      lhtest::run_cli(dir.path(),
                      "bench --packed-docs 500 --seq 2047 --levels 2 --pool 2 --topk 128 --heads 2 "
                      "--head-dim 8 --repeats 1 --warmup 0 --threads 1 --quiet --json " +
                          (dir / "b.json"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("2048"), std::string::npos) << r.out;  // N' of 2047
  const std::string json = lhtest::read_file(dir / "b.json");
  EXPECT_NE(json.find("\"packed_documents\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"at_padded_seq\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"docs\": 5"), std::string::npos) << json;
  const lhtest::CliResult bad = lhtest::run_cli(dir.path(), "bench --packed-docs 0 --seq 2047");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--packed-docs"), std::string::npos) << bad.err;
}

}  // namespace
