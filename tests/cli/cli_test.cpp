// End-to-end tests of the `lighthouse` binary: it is run as a user would run it (a shell command,
// files in a temporary folder) and its exit status, stdout, stderr and output files are checked.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
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

#include "lighthouse/lighthouse.hpp"
#include "lighthouse/npy.hpp"
#include "support/cli_run.hpp"

namespace fs = std::filesystem;

namespace {

using Result = lhtest::CliResult;
using lhtest::read_file;

class TempDir : public lhtest::TempDir {
 public:
  TempDir() : lhtest::TempDir("lighthouse-cli-test") {}
};

Result run_cli(const TempDir& dir, const std::string& args) {
  return lhtest::run_cli(dir.path(), args);
}

std::vector<float> random_floats(std::size_t count, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(count);
  for (float& x : v) x = dist(gen);
  return v;
}

// The files a small valid attention case needs: B=1, N=256, H=2, D=16 with L=2, p=2, K=128.
constexpr std::int64_t kB = 1, kN = 256, kH = 2, kD = 16;
const std::string kConfigFlags = " --levels 2 --pool 2 --topk 128 --threads 1";

struct Case {
  std::vector<float> q, k, v, dout;
};

Case write_case(const TempDir& dir) {
  const std::size_t count = kB * kN * kH * kD;
  Case c{random_floats(count, 1), random_floats(count, 2), random_floats(count, 3),
         random_floats(count, 4)};
  const std::vector<std::int64_t> shape{kB, kN, kH, kD};
  lighthouse::write_npy(dir / "q.npy", lighthouse::DType::kFloat32, shape, c.q.data());
  lighthouse::write_npy(dir / "k.npy", lighthouse::DType::kFloat32, shape, c.k.data());
  lighthouse::write_npy(dir / "v.npy", lighthouse::DType::kFloat32, shape, c.v.data());
  lighthouse::write_npy(dir / "dout.npy", lighthouse::DType::kFloat32, shape, c.dout.data());
  return c;
}

std::string inputs(const TempDir& dir) {
  return " --q '" + (dir / "q.npy") + "' --k '" + (dir / "k.npy") + "' --v '" + (dir / "v.npy") +
         "'";
}

std::vector<std::string> folder_entries(const fs::path& folder) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(folder)) names.push_back(e.path().filename());
  return names;
}

// --- help and version ----------------------------------------------------------------------

TEST(Cli, TopLevelHelpListsSubcommands) {
  TempDir dir;
  const Result r = run_cli(dir, "--help");
  EXPECT_EQ(r.status, 0) << r.err;
  for (const char* cmd : {"attention", "plan", "bench"}) {
    EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd << "\n" << r.out;
  }
}

TEST(Cli, EachSubcommandHasHelp) {
  TempDir dir;
  for (const char* cmd : {"attention", "plan", "bench", "leak-test"}) {
    const Result r = run_cli(dir, std::string(cmd) + " --help");
    EXPECT_EQ(r.status, 0) << cmd << ": " << r.err;
    EXPECT_NE(r.out.find(std::string("lighthouse ") + cmd), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--"), std::string::npos) << r.out;
  }
}

TEST(Cli, Version) {
  TempDir dir;
  const Result r = run_cli(dir, "--version");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find(lighthouse::kVersion), std::string::npos) << r.out;
}

TEST(Cli, UnknownOrMissingCommandIsUsageError) {
  TempDir dir;
  Result r = run_cli(dir, "frobnicate");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("frobnicate"), std::string::npos) << r.err;
  r = run_cli(dir, "");
  EXPECT_EQ(r.status, 2);
}

// --- attention ---------------------------------------------------------------------------------

// The CLI's files must hold exactly what the library computes for the same inputs.
TEST(CliAttention, WritesFiveFilesEqualToTheLibrary) {
  TempDir dir;
  const Case c = write_case(dir);
  const std::string out = dir / "out";
  const Result r = run_cli(dir, "attention" + inputs(dir) + " --dout '" + (dir / "dout.npy") + "'" +
                                    kConfigFlags + " --out '" + out + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");

  using lighthouse::DType;
  using lighthouse::TensorView;
  const lighthouse::Config config{.levels = 2, .pool = 2, .topk = 128, .scale = {}};
  const lighthouse::Plan plan = lighthouse::make_plan(config, kB, kN, kH, kD);
  auto view = [](const std::vector<float>& data) {
    return TensorView::contiguous(const_cast<float*>(data.data()), DType::kFloat32,
                                  lighthouse::Device::kCPU, {kB, kN, kH, kD});
  };
  const std::size_t count = kB * kN * kH * kD;
  std::vector<float> o(count), dq(count), dk(count), dv(count);
  lighthouse::Options options;
  options.threads = 1;
  lighthouse::Context ctx;
  lighthouse::forward(config, view(c.q), view(c.k), view(c.v), view(o), ctx, options);
  lighthouse::backward(ctx, view(c.dout), view(dq), view(dk), view(dv), options);
  const std::vector<std::int32_t> indices = ctx.indices();

  const std::vector<std::int64_t> bnhd{kB, kN, kH, kD};
  for (const auto& [name, expected] : {std::pair{"out.npy", &o}, std::pair{"dq.npy", &dq},
                                       std::pair{"dk.npy", &dk}, std::pair{"dv.npy", &dv}}) {
    const lighthouse::NpyArray a = lighthouse::read_npy((fs::path(out) / name).string());
    EXPECT_EQ(a.dtype, DType::kFloat32) << name;
    ASSERT_EQ(a.shape, bnhd) << name;
    const std::vector<float> got(a.data<float>(), a.data<float>() + count);
    EXPECT_EQ(got, *expected) << name;
  }
  const lighthouse::NpyArray idx = lighthouse::read_npy((fs::path(out) / "indices.npy").string());
  EXPECT_EQ(idx.dtype, DType::kInt32);
  ASSERT_EQ(idx.shape, (std::vector<std::int64_t>{kB, kH, plan.S}));
  const std::vector<std::int32_t> got(idx.data<std::int32_t>(),
                                      idx.data<std::int32_t>() + idx.numel());
  EXPECT_EQ(got, indices);
  EXPECT_EQ(folder_entries(out).size(), 5u);
}

TEST(CliAttention, WithoutDoutWritesOnlyForwardFilesAndCreatesNestedFolder) {
  TempDir dir;
  write_case(dir);
  const std::string out = dir / "a/b/c";
  const Result r = run_cli(dir, "attention" + inputs(dir) + kConfigFlags + " --out '" + out + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<std::string> names = folder_entries(out);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"indices.npy", "out.npy"}));
}

struct BadInput {
  std::string label;
  std::string args;   // the whole argument list after "attention"
  std::string flag;   // must appear in the message
  std::string value;  // must appear in the message
};

// Every bad input: exit status 2, one line on stderr naming the flag and its value, no output.
TEST(CliAttention, BadInputsExitTwoNameTheParameterAndLeaveNoOutput) {
  TempDir dir;
  write_case(dir);
  const std::vector<std::int64_t> shape{kB, kN, kH, kD};
  const std::size_t count = kB * kN * kH * kD;
  const std::vector<float> zeros(count * 2, 0.5f);
  const std::vector<double> doubles(count, 0.5);
  lighthouse::write_npy(dir / "rank3.npy", lighthouse::DType::kFloat32, {kN, kH, kD}, zeros.data());
  lighthouse::write_npy(dir / "short.npy", lighthouse::DType::kFloat32, {kB, kN / 2, kH, kD},
                        zeros.data());
  lighthouse::write_npy(dir / "f64.npy", lighthouse::DType::kFloat64, shape, doubles.data());
  lighthouse::write_npy(dir / "odd.npy", lighthouse::DType::kFloat32, {kB, 257, kH, kD},
                        zeros.data());
  std::vector<float> with_nan = zeros;
  with_nan[77] = std::nanf("");
  lighthouse::write_npy(dir / "nan.npy", lighthouse::DType::kFloat32, shape, with_nan.data());
  std::ofstream(dir / "garbage.npy") << "this is not a numpy file at all";
  {
    // A valid header whose data stops early.
    std::string bytes = lighthouse::serialize_npy(lighthouse::DType::kFloat32, shape, zeros.data());
    bytes.resize(bytes.size() / 2);
    std::ofstream(dir / "truncated.npy", std::ios::binary) << bytes;
  }
  const std::string q = " --q '" + (dir / "q.npy") + "'";
  const std::string k = " --k '" + (dir / "k.npy") + "'";
  const std::string v = " --v '" + (dir / "v.npy") + "'";
  const std::string kv = k + v;
  const std::string all = inputs(dir);
  const std::string cfg = kConfigFlags;
  auto file = [&](const std::string& name) {
    std::string quoted = "'";  // appended, not "'" + std::string&&: GCC 12 -Wrestrict false alarm
    quoted += dir / name;
    return quoted + "'";
  };

  const std::vector<BadInput> cases = {
      {"missing file", " --q " + file("nope.npy") + kv + cfg, "--q", "nope.npy"},
      {"wrong rank", " --q " + file("rank3.npy") + kv + cfg, "--q", "rank3.npy"},
      {"mismatched k", q + " --k " + file("short.npy") + v + cfg, "--k", "short.npy"},
      {"mismatched v", q + k + " --v " + file("short.npy") + cfg, "--v", "short.npy"},
      {"mismatched dout", all + " --dout " + file("short.npy") + cfg, "--dout", "short.npy"},
      {"float64 file", " --q " + file("f64.npy") + kv + cfg, "--q", "f64.npy"},
      {"malformed file", " --q " + file("garbage.npy") + kv + cfg, "--q", "garbage.npy"},
      {"truncated file", " --q " + file("truncated.npy") + kv + cfg, "--q", "truncated.npy"},
      {"NaN with --check-finite", " --q " + file("nan.npy") + kv + cfg + " --check-finite", "--q",
       "nan.npy"},
      {"levels 0", all + " --levels 0 --pool 2 --topk 128", "--levels", "0"},
      {"levels not a number", all + " --levels two --pool 2 --topk 128", "--levels", "two"},
      {"pool not a power of two", all + " --levels 2 --pool 3 --topk 128", "--pool", "3"},
      {"topk not a multiple of 128", all + " --levels 2 --pool 2 --topk 100", "--topk", "100"},
      {"scale negative", all + cfg + " --scale -0.5", "--scale", "-0.5"},
      {"threads negative", all + " --levels 2 --pool 2 --topk 128 --threads -2", "--threads", "-2"},
      {"dtype on cpu", all + cfg + " --dtype bfloat16", "--dtype", "bfloat16"},
      {"unknown device", all + cfg + " --device tpu", "--device", "tpu"},
      {"missing --levels", all + " --pool 2 --topk 128", "--levels", "missing"},
      {"missing --k", q + v + cfg, "--k", "missing"},
      {"unknown flag", all + cfg + " --bogus 3", "--bogus", "unknown option"},
  };
  for (const bool out_exists : {false, true}) {
    for (const BadInput& c : cases) {
      const std::string out = dir / "out";
      if (out_exists) fs::create_directory(out);
      const Result r = run_cli(dir, "attention" + c.args + " --out '" + out + "'");
      SCOPED_TRACE(c.label + (out_exists ? " (out exists)" : " (out missing)"));
      EXPECT_EQ(r.status, 2) << r.err;
      EXPECT_EQ(r.out, "");
      EXPECT_EQ(r.err.rfind("lighthouse attention: error: ", 0), 0u) << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
      EXPECT_NE(r.err.find(c.flag), std::string::npos) << r.err;
      EXPECT_NE(r.err.find(c.value), std::string::npos) << r.err;
      if (out_exists) {
        EXPECT_TRUE(folder_entries(out).empty()) << "files left in " << out;
        fs::remove(out);
      } else {
        EXPECT_FALSE(fs::exists(out)) << out << " was created";
      }
    }
  }
}

// A failure after some files were already moved into place (here: dq.npy is taken by a folder,
// so its rename fails) removes them again; only what was there before remains.
TEST(CliAttention, FailureWhileWritingRemovesTheFilesOfThisRun) {
  TempDir dir;
  write_case(dir);
  const fs::path out = dir / "out";
  fs::create_directories(out / "dq.npy");
  std::ofstream(out / "dq.npy" / "keep") << "x";
  const Result r = run_cli(dir, "attention" + inputs(dir) + " --dout '" + (dir / "dout.npy") + "'" +
                                    kConfigFlags + " --out '" + out.string() + "'");
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("dq.npy"), std::string::npos) << r.err;
  EXPECT_EQ(folder_entries(out), std::vector<std::string>{"dq.npy"});
}

TEST(CliAttention, OutputPathThatIsAFileIsRejected) {
  TempDir dir;
  write_case(dir);
  std::ofstream(dir / "taken") << "x";
  const Result r =
      run_cli(dir, "attention" + inputs(dir) + kConfigFlags + " --out '" + (dir / "taken") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--out"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(dir / "taken"), "x");
}

// --- plan ----------------------------------------------------------------------------------

TEST(CliPlan, ValidConfigurationPrintsThePyramid) {
  TempDir dir;
  // N = 4096, L = 3, p = 4, K = 128: n_3 = 256, one tile of C = 256, S = 256 + 2*4*128 = 1280.
  Result r = run_cli(dir, "plan --seq 4096 --levels 3 --pool 4 --topk 128");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("valid: yes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1280"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("outside level 1's 512 entries gets no output from its own query"),
            std::string::npos)
      << r.out;

  r = run_cli(dir, "plan --seq 4096 --levels 3 --pool 4 --topk 128 --heads 2 --head-dim 32 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["valid"], true);
  EXPECT_EQ(j["S"], 1280);
  EXPECT_EQ(j["tiles"], 1);
  EXPECT_EQ(j["C"], 256);
  ASSERT_EQ(j["levels"].size(), 3u);
  EXPECT_EQ(j["levels"][2]["block"], 16);
  EXPECT_EQ(j["levels"][2]["entries"], 256);
  EXPECT_EQ(j["levels"][2]["offset"], 4096 + 1024);
  // In S: p * K = 512 entries of each finer level, every coarsest one. Each writes c_l tokens:
  // level 1 reaches 512 of 4096 tokens, level 2 2048, level 3 all but the first 15.
  EXPECT_EQ(j["levels"][0]["in_S"], 512);
  EXPECT_EQ(j["levels"][1]["in_S"], 512);
  EXPECT_EQ(j["levels"][2]["in_S"], 256);
  EXPECT_DOUBLE_EQ(j["levels"][0]["token_share"].get<double>(), 0.125);
  EXPECT_DOUBLE_EQ(j["levels"][1]["token_share"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["levels"][2]["token_share"].get<double>(), (4096.0 - 15) / 4096);
  const lighthouse::Plan plan =
      lighthouse::make_plan({.levels = 3, .pool = 4, .topk = 128, .scale = {}}, 1, 4096, 2, 32);
  EXPECT_DOUBLE_EQ(j["flops"]["lighthouse"]["fwd"].get<double>(), plan.attention_fwd_flops());
  EXPECT_DOUBLE_EQ(j["flops"]["dense"]["bwd"].get<double>(), plan.dense_bwd_flops());
  EXPECT_EQ(j["gathered_bytes"]["float32"].get<std::int64_t>(), plan.gathered_bytes(4));
}

TEST(CliPlan, PrintsThePaddedLength) {
  TempDir dir;
  // Any length runs: 4100 pads to 4104 (L 2, p 4, K 256: a multiple of 8).
  Result r = run_cli(dir, "plan --seq 4100 --levels 2 --pool 4 --topk 256");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("padded length: 4104 (N padded with zeros"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("valid: yes"), std::string::npos) << r.out;
  r = run_cli(dir, "plan --seq 4100 --levels 2 --pool 4 --topk 256 --json");
  EXPECT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["padded_seq"], 4104);
  EXPECT_EQ(j["dense_fallback"], false);
  // 1000 with K = 2048 at L 3, p 4: the padded length's S reaches N, dense attention.
  r = run_cli(dir, "plan --seq 1000 --levels 3 --pool 4 --topk 2048 --json");
  EXPECT_EQ(r.status, 0) << r.err;
  const nlohmann::json d = nlohmann::json::parse(r.out);
  EXPECT_EQ(d["dense_fallback"], true);
  EXPECT_EQ(d["S"], 1000);
  EXPECT_EQ(d["padded_seq"], 32768);
}

TEST(CliPlan, InvalidConfigurationSaysWhyAndExitsTwo) {
  TempDir dir;
  // K must be a multiple of 128.
  Result r = run_cli(dir, "plan --seq 8192 --levels 3 --pool 4 --topk 100");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("valid: no"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("--topk = 100"), std::string::npos) << r.err;

  r = run_cli(dir, "plan --seq 8192 --levels 3 --pool 4 --topk 100 --json");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(nlohmann::json::parse(r.out)["valid"], false);
}

// --- bench ---------------------------------------------------------------------------------

// A bench JSON row with positive fwd, bwd and fwd+bwd times and forward stage times.
void expect_timed_with_stages(const nlohmann::json& row) {
  EXPECT_GT(row["fwd_ms"].get<double>(), 0) << row.dump();
  EXPECT_GT(row["bwd_ms"].get<double>(), 0) << row.dump();
  EXPECT_GT(row["fwd_bwd_ms"].get<double>(), 0) << row.dump();
  EXPECT_TRUE(row["stages_fwd"].is_object()) << row.dump();
}

TEST(CliBench, JsonAndPlotHaveTheRequiredContent) {
  TempDir dir;
  const std::string json = dir / "bench.json", svg = dir / "bench.svg";
  const Result r = run_cli(
      dir,
      "bench --seq 512,1024 --batch 1 --heads 1 --head-dim 16 --levels 2 --pool 2 --topk 128 "
      "--impl dense,lighthouse,floor --repeats 1 --warmup 0 --threads 1 --sgemm-size 64 "
      "--quiet --stages --json '" +
          json + "' --plot '" + svg + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");  // --quiet
  EXPECT_NE(r.out.find("\nlighthouse "), std::string::npos) << r.out;

  const nlohmann::json j = nlohmann::json::parse(read_file(json));
  EXPECT_EQ(j["device"], "cpu");
  EXPECT_TRUE(j["machine"].is_object());
  EXPECT_TRUE(j.contains("sgemm_gflops"));
  EXPECT_EQ(j["config"]["levels"], 2);
  EXPECT_EQ(j["config"]["topk"], 128);
  // On the cpu every impl is timed alone by default (side by side is the cuda default).
  EXPECT_EQ(j["config"]["side_by_side"], false);
  EXPECT_EQ(r.out.find("side by side"), std::string::npos) << r.out;
  ASSERT_EQ(j["rows"].size(), 6u);
  for (const nlohmann::json& row : j["rows"]) {
    for (const char* key : {"impl", "seq", "S", "fwd_ms", "bwd_ms", "fwd_bwd_ms", "fwd_gflops",
                            "bwd_gflops", "stages_fwd", "stages_bwd"}) {
      EXPECT_TRUE(row.contains(key)) << key << " in " << row.dump();
    }
    EXPECT_EQ(row["side_by_side"], false) << row.dump();
    expect_timed_with_stages(row);
  }
  // Rows in order: dense, lighthouse, floor at N = 512, then at 1024. At N = 1024, L = 2, p = 2,
  // K = 128: S = 512 + 256 = 768, and the floor runs at that length.
  EXPECT_EQ(j["rows"][0]["impl"], "dense");
  EXPECT_EQ(j["rows"][0]["S"], 512);
  EXPECT_EQ(j["rows"][4]["impl"], "lighthouse");
  EXPECT_EQ(j["rows"][4]["seq"], 1024);
  EXPECT_EQ(j["rows"][4]["S"], 768);
  EXPECT_EQ(j["rows"][5]["impl"], "floor");
  EXPECT_EQ(j["rows"][5]["S"], 768);
  EXPECT_TRUE(j["rows"][4]["speedup_vs_dense"].is_number());

  const std::string plot = read_file(svg);
  EXPECT_EQ(plot.rfind("<?xml", 0), 0u);
  EXPECT_NE(plot.find("<svg"), std::string::npos);
  EXPECT_NE(plot.find("</svg>"), std::string::npos);
  for (const char* name : {">dense<", ">lighthouse<", ">floor<", "<polyline"}) {
    EXPECT_NE(plot.find(name), std::string::npos) << name;
  }
}

// --side-by-side on (the cuda default; on the cpu only when asked): at each N the lighthouse and
// floor rows come from one alternating loop, whatever their order in --impl; dense is timed
// alone; the rows keep the --impl order. The back-to-back section shows the side-by-side rows'
// own times (their loop is interleaved) and no separate-loop gap.
TEST(CliBench, SideBySideTimesLighthouseAndFloorInOneLoop) {
  TempDir dir;
  const std::string json = dir / "bench.json";
  const Result r = run_cli(dir,
                           "bench --seq 512,1024 --heads 1 --head-dim 16 --levels 2 --pool 2 "
                           "--topk 128 --impl floor,lighthouse,dense --side-by-side on --repeats 2 "
                           "--warmup 1 --threads 1 --sgemm-size 0 --stages --json '" +
                               json + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  // One progress step per measurement: a pair and dense at each N.
  EXPECT_NE(r.err.find("[1/4] lighthouse and floor N=512 (S=512), side by side"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("[2/4] dense N=512"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("[3/4] lighthouse and floor N=1024 (S=768), side by side"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.out.find("# lighthouse and floor timed side by side"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("# back to back"), std::string::npos) << r.out;

  const nlohmann::json j = nlohmann::json::parse(read_file(json));
  EXPECT_EQ(j["config"]["side_by_side"], true);
  ASSERT_EQ(j["rows"].size(), 6u);
  const char* impls[] = {"floor", "lighthouse", "dense"};
  for (std::size_t i = 0; i < 6; ++i) {
    const nlohmann::json& row = j["rows"][i];
    EXPECT_EQ(row["impl"], impls[i % 3]) << row.dump();
    EXPECT_EQ(row["seq"], i < 3 ? 512 : 1024) << row.dump();
    EXPECT_EQ(row["side_by_side"], row["impl"] != "dense") << row.dump();
    expect_timed_with_stages(row);
    EXPECT_TRUE(row["stages_bwd"].is_object()) << row.dump();
    EXPECT_TRUE(row["interleaved"].is_null()) << row.dump();  // cpu; side by side: the own times
  }
  EXPECT_EQ(j["rows"][4]["S"], 768);
  EXPECT_EQ(j["rows"][3]["S"], 768);
  EXPECT_TRUE(j["rows"][4]["ratio_vs_floor"].is_number());
  EXPECT_TRUE(j["rows"][4]["fwd_ratio_vs_floor"].is_number());
  EXPECT_TRUE(j["rows"][4]["speedup_vs_dense"].is_number());
}

// Only one of lighthouse and floor asked for: nothing to pair, it is timed alone.
TEST(CliBench, SideBySideWithoutAPartnerTimesAlone) {
  TempDir dir;
  const std::string json = dir / "bench.json";
  const Result r = run_cli(dir,
                           "bench --seq 512 --heads 1 --head-dim 16 --levels 2 --pool 2 --topk 128 "
                           "--impl lighthouse,dense --side-by-side on --repeats 1 --warmup 0 "
                           "--threads 1 --sgemm-size 0 --quiet --json '" +
                               json + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.find("side by side"), std::string::npos) << r.out;
  const nlohmann::json j = nlohmann::json::parse(read_file(json));
  EXPECT_EQ(j["config"]["side_by_side"], true);
  ASSERT_EQ(j["rows"].size(), 2u);
  EXPECT_EQ(j["rows"][0]["impl"], "lighthouse");
  EXPECT_EQ(j["rows"][0]["side_by_side"], false);
  EXPECT_EQ(j["rows"][1]["side_by_side"], false);
}

TEST(CliBench, BadFlagsExitTwoBeforeRunning) {
  TempDir dir;
  const std::string json = dir / "bench.json";
  const std::string base =
      "bench --heads 1 --head-dim 16 --repeats 1 --warmup 0 --quiet "
      "--sgemm-size 0 --json '" +
      json + "'";
  struct Bad {
    std::string args, needle;
  };
  for (const Bad& b : {Bad{" --seq 0", "--seq"}, Bad{" --seq 512 --impl dense,sparse", "--impl"},
                       Bad{" --seq 512 --repeats 0", "--repeats = 0"},
                       Bad{" --seq 512 --levels 2 --pool 5 --topk 128", "--pool = 5"},
                       Bad{" --seq 512,,1024", "--seq"},
                       Bad{" --seq 512 --side-by-side yes", "--side-by-side = yes"}}) {
    const Result r = run_cli(dir, base + b.args);
    EXPECT_EQ(r.status, 2) << b.args << ": " << r.err;
    EXPECT_NE(r.err.find(b.needle), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(json)) << b.args;
  }
  const Result r = run_cli(dir, "bench --seq 512 --json '" + (dir / "no/such/dir/x.json") + "'");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--json"), std::string::npos) << r.err;
}

// --- selection and the leak test ---------------------------------------------------------------

// Every command that takes --selection rejects anything but original and causal, naming the
// flag and the choices, before doing any work.
TEST(CliSelection, UnknownSelectionIsAUsageErrorNamingTheChoices) {
  TempDir dir;
  write_case(dir);
  const std::string json = dir / "x.json";
  for (const std::string& args :
       {"attention" + inputs(dir) + kConfigFlags + " --out '" + (dir / "out") + "'",
        std::string("plan --seq 1024 --levels 2 --pool 2 --topk 128"),
        "bench --seq 512 --heads 1 --head-dim 16 --json '" + json + "'",
        std::string("train --stage1-steps 1 --stage2-steps 0 --seq 256 --dim 16 --layers 1"),
        "leak-test --steps 1 --json '" + json + "'"}) {
    const Result r = run_cli(dir, args + " --selection strict");
    EXPECT_EQ(r.status, 2) << args << ": " << r.err;
    EXPECT_NE(r.err.find("--selection = strict: must be original, causal or stride"),
              std::string::npos)
        << args << ": " << r.err;
    EXPECT_FALSE(fs::exists(dir / "out")) << args;
    EXPECT_FALSE(fs::exists(json)) << args;
  }
}

// `attention --selection causal` writes what the library computes with Selection::kCausal, which
// differs from the original's selection on these inputs (C = 512 candidates per level).
TEST(CliSelection, AttentionAndPlanTakeTheCausalSelection) {
  TempDir dir;
  constexpr std::int64_t n = 1024;
  const std::size_t count = kB * n * kH * kD;
  const std::vector<float> q = random_floats(count, 11), k = random_floats(count, 12),
                           v = random_floats(count, 13);
  const std::vector<std::int64_t> shape{kB, n, kH, kD};
  lighthouse::write_npy(dir / "q.npy", lighthouse::DType::kFloat32, shape, q.data());
  lighthouse::write_npy(dir / "k.npy", lighthouse::DType::kFloat32, shape, k.data());
  lighthouse::write_npy(dir / "v.npy", lighthouse::DType::kFloat32, shape, v.data());
  const Result r = run_cli(dir, "attention" + inputs(dir) + kConfigFlags +
                                    " --selection causal --out '" + (dir / "out") + "'");
  ASSERT_EQ(r.status, 0) << r.err;

  lighthouse::Config config{.levels = 2, .pool = 2, .topk = 128, .scale = {}};
  auto indices_of = [&](const lighthouse::Config& c) {
    auto view = [](const std::vector<float>& data) {
      return lighthouse::TensorView::contiguous(const_cast<float*>(data.data()),
                                                lighthouse::DType::kFloat32,
                                                lighthouse::Device::kCPU, {kB, n, kH, kD});
    };
    std::vector<float> o(count);
    lighthouse::Context ctx;
    lighthouse::forward(c, view(q), view(k), view(v), view(o), ctx, {.threads = 1});
    return ctx.indices();
  };
  const std::vector<std::int32_t> original = indices_of(config);
  config.selection = lighthouse::Selection::kCausal;
  const std::vector<std::int32_t> causal = indices_of(config);
  const lighthouse::NpyArray idx = lighthouse::read_npy(dir / "out/indices.npy");
  const std::vector<std::int32_t> got(idx.data<std::int32_t>(),
                                      idx.data<std::int32_t>() + idx.numel());
  EXPECT_EQ(got, causal);
  EXPECT_NE(got, original);

  const Result plan =
      run_cli(dir, "plan --seq 1024 --levels 2 --pool 2 --topk 128 --selection causal");
  EXPECT_EQ(plan.status, 0) << plan.err;
  EXPECT_NE(plan.out.find("selection causal"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("valid: yes"), std::string::npos) << plan.out;
}

// A tiny leak test runs end to end: both losses with their intervals, a verdict, the JSON.
TEST(CliLeakTest, TinyRunPrintsBothLossesAVerdictAndJson) {
  TempDir dir;
  const std::string json = dir / "leak.json";
  const Result r =
      run_cli(dir,
              "leak-test --seq 256 --dim 16 --heads 2 --steps 3 --levels 2 --pool 2 --topk 128 "
              "--selection causal --eval-tokens 512 --threads 1 --quiet --json '" +
                  json + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("held-out loss under Lighthouse"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("same model under dense attention"), std::string::npos) << r.out;
  EXPECT_TRUE(r.out.find("no leak detected") != std::string::npos ||
              r.out.find("leaks: loss under Lighthouse is") != std::string::npos)
      << r.out;
  const nlohmann::json j = nlohmann::json::parse(read_file(json));
  EXPECT_EQ(j["selection"], "causal");
  EXPECT_EQ(j["lighthouse"]["tokens"], 512);
  EXPECT_TRUE(j["lighthouse"]["ci95"].is_number() && j["dense"]["excess"].is_number());
  EXPECT_TRUE(j["leaks"].is_boolean());
}

TEST(CliLeakTest, BadFlagsExitTwoBeforeTraining) {
  TempDir dir;
  struct Bad {
    std::string args, needle;
  };
  for (const Bad& b : {Bad{"--steps 0", "--steps = 0"}, Bad{"--levels 2 --pool 3", "--pool = 3"},
                       Bad{"--seq 0", "--seq = 0"}, Bad{"--dense-layers 7", "--dense-layers = 7"},
                       Bad{"--json '" + (dir / "no/such/x.json") + "'", "--json"}}) {
    const Result r = run_cli(dir, "leak-test --quiet " + b.args);
    EXPECT_EQ(r.status, 2) << b.args << ": " << r.err;
    EXPECT_NE(r.err.find(b.needle), std::string::npos) << b.args << ": " << r.err;
  }
}

}  // namespace
