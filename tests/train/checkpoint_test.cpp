// Checkpoints: the safetensors layout; an interrupted and resumed run reproduces the losses and
// weights of an uninterrupted one bit for bit (before and after the stage switch); a truncated,
// corrupted or mismatched checkpoint is a CheckpointError naming the file, and leaves the
// trainer untouched.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tiny_configs.hpp"
#include "train/checkpoint.hpp"
#include "train/safetensors.hpp"
#include "train/trainer.hpp"

namespace {

namespace fs = std::filesystem;
using lighthouse::train::CheckpointError;
using lighthouse::train::TokenStream;
using lighthouse::train::TrainConfig;
using lighthouse::train::Trainer;

// The trainer test's two-stage run, with a warmup that ends within it (2 of 5 steps).
TrainConfig config() {
  TrainConfig c = lhtest::two_stage_config();
  c.schedule.warmup = 2;
  return c;
}

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "lighthouse-ckpt-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    data_ = lighthouse::train::generate_corpus(6000, 3, 1000);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Trainer make(const TrainConfig& c = config()) {
    return Trainer(c, &data_, &data_, lighthouse::train::make_cpu_attention(1));
  }
  fs::path dir_;
  TokenStream data_;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

TEST(Safetensors, LayoutIsLengthThenJsonHeaderThenData) {
  const std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {7};
  const std::string bytes = lighthouse::train::encode_safetensors(
      {{"a", {2, 3}, a.data()}, {"b", {1}, b.data()}}, {{"dim", "16"}});
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  ASSERT_EQ(bytes.size(), 8 + n + 7 * sizeof(float));
  EXPECT_EQ((8 + n) % 8, 0u);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["__metadata__"]["dim"], "16");
  EXPECT_EQ(header["a"]["dtype"], "F32");
  EXPECT_EQ(header["a"]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(header["a"]["data_offsets"], nlohmann::json({0, 24}));
  EXPECT_EQ(header["b"]["data_offsets"], nlohmann::json({24, 28}));
  float last = 0;
  std::memcpy(&last, bytes.data() + bytes.size() - 4, 4);
  EXPECT_EQ(last, 7.0f);

  const auto file = lighthouse::train::decode_safetensors("x", bytes);
  std::vector<float> out(6);
  file.read("x", "a", {2, 3}, out.data());
  EXPECT_EQ(out, a);
  EXPECT_THROW(file.read("x", "a", {3, 2}, out.data()), CheckpointError);
  EXPECT_THROW(file.read("x", "c", {1}, out.data()), CheckpointError);
  // Every prefix is rejected cleanly, never read past its end.
  for (std::size_t cut = 0; cut < bytes.size(); cut += 3) {
    EXPECT_THROW(lighthouse::train::decode_safetensors("x", bytes.substr(0, cut)), CheckpointError)
        << cut;
  }
  std::string huge = bytes;
  huge[7] = '\x7f';  // header length past the end
  EXPECT_THROW(lighthouse::train::decode_safetensors("x", huge), CheckpointError);
}

std::vector<double> finish(Trainer& t) {
  std::vector<double> losses;
  while (!t.done()) losses.push_back(t.step().loss);
  losses.push_back(t.evaluate().dense_loss);
  return losses;
}

TEST_F(Checkpoint, ResumedRunIsBitExactAcrossTheStageSwitch) {
  Trainer whole = make();
  std::vector<double> expected;
  while (!whole.done()) expected.push_back(whole.step().loss);
  expected.push_back(whole.evaluate().dense_loss);

  for (int stop : {2, 3, 4}) {  // before, at and after the switch (stage1_steps = 3)
    Trainer first = make();
    std::vector<double> losses;
    for (int i = 0; i < stop; ++i) losses.push_back(first.step().loss);
    const std::string folder = lighthouse::train::save_checkpoint(first, dir_.string());
    EXPECT_EQ(fs::path(folder).filename(), "step-0000000" + std::to_string(stop));
    Trainer second = make();
    EXPECT_EQ(lighthouse::train::load_checkpoint(
                  second, dir_.string() + "/" + fs::path(folder).filename().string()),
              stop);
    EXPECT_EQ(second.stage(), stop < 3 ? 1 : 2);
    for (double l : finish(second)) losses.push_back(l);
    EXPECT_EQ(losses, expected) << "stopped after " << stop;
    const auto pa = whole.model().read_params();
    const auto pb = second.model().read_params();
    for (std::size_t i = 0; i < pa.size(); ++i) {
      EXPECT_EQ(pa[i], pb[i]) << whole.model().params()[i].name;
    }
  }
  // A root folder resolves to its latest checkpoint.
  EXPECT_EQ(fs::path(lighthouse::train::resolve_checkpoint(dir_.string())).filename(),
            "step-00000004");
  // No temporary folders are left behind.
  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_EQ(e.path().filename().string().rfind("step-", 0), 0u) << e.path();
  }
}

// Loads `folder` into a fresh trainer expecting a CheckpointError whose message names `file`
// and contains `problem`; the trainer must be unchanged.
void expect_rejected(Trainer fresh, const fs::path& folder, const std::string& file,
                     const std::string& problem) {
  const auto before = fresh.model().read_params()[1];
  try {
    lighthouse::train::load_checkpoint(fresh, folder.string());
    ADD_FAILURE() << "expected CheckpointError for " << file << " / " << problem;
  } catch (const CheckpointError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(file), std::string::npos) << what;
    EXPECT_NE(what.find(problem), std::string::npos) << what;
  }
  EXPECT_EQ(fresh.step_count(), 0);
  EXPECT_EQ(fresh.model().read_params()[1], before);
}

// load_weights (--init-from): the weights alone, into a trainer of another run shape; its step,
// optimizer and data position stay fresh. A damaged file or another model shape is rejected by
// name, the model untouched.
TEST_F(Checkpoint, LoadWeightsTakesOnlyTheWeights) {
  Trainer t = make();
  t.step();
  t.step();
  const std::string folder = lighthouse::train::save_checkpoint(t, dir_.string());
  TrainConfig other = config();
  other.seq = 512;
  other.stage1_steps = 4;
  Trainer fresh = make(other);
  lighthouse::train::load_weights(fresh.model(), other.model, folder);
  EXPECT_EQ(fresh.step_count(), 0);
  EXPECT_EQ(fresh.model().read_optimizer().steps, 0);
  const auto want = t.model().read_params();
  const auto got = fresh.model().read_params();
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << t.model().params()[i].name;
  }
  EXPECT_EQ(fresh.step().step, 1);

  TrainConfig wider = other;
  wider.model.dim = 32;
  Trainer w = make(wider);
  const auto before = w.model().read_params()[1];
  try {
    lighthouse::train::load_weights(w.model(), wider.model, folder);
    ADD_FAILURE() << "expected CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("model config differs: dim = 16"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(w.model().read_params()[1], before);
  std::string bytes = slurp(fs::path(folder) / "model.safetensors");
  bytes[bytes.size() / 2] ^= 0x10;
  spit(fs::path(folder) / "model.safetensors", bytes);
  EXPECT_THROW(lighthouse::train::load_weights(fresh.model(), other.model, folder),
               CheckpointError);
}

TEST_F(Checkpoint, DamagedOrMismatchedCheckpointsAreRejectedByName) {
  Trainer t = make();
  t.step();
  const fs::path good = lighthouse::train::save_checkpoint(t, (dir_ / "good").string());
  auto copy = [&](const std::string& name) {
    const fs::path to = dir_ / name;
    fs::copy(good, to);
    return to;
  };

  fs::path bad = copy("flipped");
  std::string bytes = slurp(bad / "model.safetensors");
  bytes[bytes.size() / 2] ^= 0x10;
  spit(bad / "model.safetensors", bytes);
  expect_rejected(make(), bad, "model.safetensors", "checksum mismatch");

  bad = copy("truncated");
  bytes = slurp(bad / "optimizer.safetensors");
  spit(bad / "optimizer.safetensors", bytes.substr(0, bytes.size() - 5));
  expect_rejected(make(), bad, "optimizer.safetensors", "truncated");

  bad = copy("state");
  bytes = slurp(bad / "state.json");
  const auto at = bytes.find("\"step\": 1");
  ASSERT_NE(at, std::string::npos) << bytes;
  bytes[at + 8] = '2';
  spit(bad / "state.json", bytes);
  expect_rejected(make(), bad, "state.json", "checksum mismatch");

  bad = copy("cut-json");
  bytes = slurp(bad / "state.json");
  spit(bad / "state.json", bytes.substr(0, bytes.size() / 2));
  expect_rejected(make(), bad, "state.json", "corrupt or truncated JSON");

  bad = copy("missing");
  fs::remove(bad / "optimizer.safetensors");
  expect_rejected(make(), bad, "optimizer.safetensors", "missing");

  TrainConfig wider = config();
  wider.model.dim = 32;
  expect_rejected(make(wider), good, "model.safetensors", "model config differs: dim = 16");
  TrainConfig longer = config();
  longer.stage1_steps = 4;
  expect_rejected(make(longer), good, "state.json", "stage1_steps = 3");

  TokenStream other = data_;
  other[10] ^= 1;
  expect_rejected(Trainer(config(), &other, &other, lighthouse::train::make_cpu_attention(1)), good,
                  "state.json", "other data");
  EXPECT_THROW(lighthouse::train::resolve_checkpoint((dir_ / "nothing").string()), CheckpointError);
}

}  // namespace
