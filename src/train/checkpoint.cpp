#include "train/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/checksum.hpp"

namespace lighthouse::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "lighthouse-train-checkpoint";
constexpr int kVersion = 1;

std::string errno_text() {
  return std::strerror(errno);
}

// open + write + fsync + close: after this returns the bytes are on disk.
void write_synced(const fs::path& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(path.string() + ": cannot create: " + errno_text());
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = errno_text();
      ::close(fd);
      throw Error(path.string() + ": write failed: " + why);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    throw Error(path.string() + ": fsync failed: " + why);
  }
  if (::close(fd) != 0) throw Error(path.string() + ": close failed: " + errno_text());
}

void sync_folder(const fs::path& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw Error(folder.string() + ": cannot open folder to fsync: " + errno_text());
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw Error(folder.string() + ": fsync failed: " + errno_text());
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError(path.string(), "missing or unreadable");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw CheckpointError(path.string(), "read error");
  return ss.str();
}

std::map<std::string, std::string> model_metadata(const ModelConfig& m) {
  auto num = [](double v) { return nlohmann::json(v).dump(); };  // shortest round-trip text
  std::map<std::string, std::string> meta{{"format", kFormat},
                                          {"vocab", std::to_string(m.vocab)},
                                          {"dim", std::to_string(m.dim)},
                                          {"layers", std::to_string(m.layers)},
                                          {"heads", std::to_string(m.heads)},
                                          {"hidden", std::to_string(m.ffn())},
                                          {"tied", m.tied ? "true" : "false"},
                                          {"rope_base", num(m.rope_base)},
                                          {"norm_eps", num(m.norm_eps)}};
  // Grouped-query models only, so that multi-head checkpoints keep their metadata.
  if (m.kv_head_count() != m.heads) meta["kv_heads"] = std::to_string(m.kv_head_count());
  return meta;
}

std::uint64_t stream_hash(const TokenStream& s) {
  return fnv64(s.data(), s.size() * sizeof(std::int32_t));
}

// The checksum of state.json: over its compact dump without the "checksum" field.
std::string state_checksum(nlohmann::json state) {
  state.erase("checksum");
  const std::string text = state.dump();
  return hex64(fnv64(text.data(), text.size()));
}

nlohmann::json file_entry(const std::string& bytes) {
  return {{"bytes", bytes.size()}, {"fnv64", hex64(fnv64(bytes.data(), bytes.size()))}};
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

// "; tensor <name> is [..] in the checkpoint, the model needs [..]" for the first parameter
// whose shape differs (or is missing), or "" when every parameter matches.
std::string first_shape_difference(const SafetensorsFile& file, const LanguageModel& model) {
  for (const ParamInfo& p : model.params()) {
    const auto it = file.tensors.find(p.name);
    if (it == file.tensors.end()) return "; the checkpoint has no tensor " + p.name;
    if (it->second.shape != p.shape) {
      return "; tensor " + p.name + " is " + shape_text(it->second.shape) +
             " in the checkpoint, the model needs " + shape_text(p.shape);
    }
  }
  return "";
}

nlohmann::json recipe_json(const TrainConfig& c) {
  const std::vector<Config> stage1 =
      c.stage1_steps == 0 ? all_dense(c.model.layers)
                          : layer_attention(c.model.layers, c.lighthouse,
                                            c.dense_layers ? *c.dense_layers
                                                           : default_dense_layers(c.model.layers));
  nlohmann::json layers = nlohmann::json::array();
  for (const Config& l : stage1) {
    layers.push_back({{"levels", l.levels},
                      {"pool", l.pool},
                      {"topk", l.topk},
                      {"selection", selection_name(l.selection)}});
  }
  const char* decay[] = {"cosine", "linear", "constant", "wsd"};
  return {{"stage1_steps", c.stage1_steps},
          {"stage2_steps", c.stage2_steps},
          {"stage1_attention", layers},
          {"schedule",
           {{"lr", c.schedule.lr},
            {"warmup", c.schedule.warmup},
            {"total", c.stage1_steps + c.stage2_steps},
            {"decay", decay[static_cast<int>(c.schedule.decay)]},
            {"min_ratio", c.schedule.min_ratio},
            {"cooldown", c.schedule.cooldown}}},
          {"adamw",
           {{"beta1", c.adamw.beta1},
            {"beta2", c.adamw.beta2},
            {"eps", c.adamw.eps},
            {"weight_decay", c.adamw.weight_decay}}},
          {"grad_clip", c.grad_clip},
          {"model",
           {{"rope_base", c.model.rope_base},
            {"norm_eps", c.model.norm_eps},
            {"init_std", c.model.init_std}}}};
}

std::string step_name(std::int64_t step) {
  char text[32];
  std::snprintf(text, sizeof text, "step-%08lld", static_cast<long long>(step));
  return text;
}

}  // namespace

std::string save_checkpoint(Trainer& trainer, const std::string& root) {
  LanguageModel& model = trainer.model();
  const TrainConfig& c = trainer.config();
  // Host float32 copies: the same files whichever device holds the model.
  const std::vector<std::vector<float>> values = model.read_params();
  const LanguageModel::OptimizerState opt = model.read_optimizer();
  std::vector<SafetensorsEntry> weights, moments;
  for (std::size_t i = 0; i < model.params().size(); ++i) {
    const ParamInfo& p = model.params()[i];
    weights.push_back({p.name, p.shape, values[i].data()});
    moments.push_back({"m." + p.name, p.shape, opt.m[i].data()});
    moments.push_back({"v." + p.name, p.shape, opt.v[i].data()});
  }
  const std::string model_bytes = encode_safetensors(weights, model_metadata(c.model));
  const std::string opt_bytes = encode_safetensors(moments, {{"format", kFormat}});

  nlohmann::json state = {
      {"format", kFormat},
      {"version", kVersion},
      {"step", trainer.step_count()},
      {"stage", trainer.stage()},
      {"optimizer_steps", opt.steps},
      // 64-bit integers as decimal strings: JSON readers elsewhere may hold numbers as doubles.
      {"rng_state", std::to_string(trainer.rng().state())},
      {"data_position", std::to_string(trainer.packer().position())},
      {"data_tokens", trainer.packer().stream().size()},
      {"data_fnv64", hex64(stream_hash(trainer.packer().stream()))},
      {"run",
       // The whole batch: with data parallelism, every group's (D * batch), so that the
       // checkpoint holds no D (the data position is that of the D * batch run too).
       {{"seq", c.seq},
        {"batch", c.batch * c.dp},
        {"accum", c.accum},
        {"stage1_steps", c.stage1_steps}}},
      // What the run trains with (not checked on load): enough for another implementation of
      // the same model (python/lighthouse_attention/twin.py) to continue it step for step.
      {"recipe", recipe_json(c)},
      {"device", device_name(model.device())},
      {"files",
       {{"model.safetensors", file_entry(model_bytes)},
        {"optimizer.safetensors", file_entry(opt_bytes)}}}};
  state["checksum"] = state_checksum(state);

  const fs::path root_path(root);
  std::error_code ec;
  fs::create_directories(root_path, ec);
  if (ec) throw Error(root + ": cannot create the checkpoint folder: " + ec.message());
  const std::string name = step_name(trainer.step_count());
  const fs::path final_path = root_path / name;
  const fs::path temp = root_path / ("." + name + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(temp, ec);
  try {
    if (!fs::create_directory(temp, ec) || ec) {
      throw Error(temp.string() + ": cannot create: " + ec.message());
    }
    write_synced(temp / "model.safetensors", model_bytes);
    write_synced(temp / "optimizer.safetensors", opt_bytes);
    write_synced(temp / "state.json", state.dump(1) + "\n");
    sync_folder(temp);
    // rename() cannot replace a non-empty folder: move an older one of this step aside first.
    const fs::path old = root_path / ("." + name + ".old-" + std::to_string(::getpid()));
    if (fs::exists(final_path)) fs::rename(final_path, old);
    fs::rename(temp, final_path);
    sync_folder(root_path);
    fs::remove_all(old, ec);
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(temp, ec);
    throw Error(final_path.string() + ": cannot write the checkpoint: " + e.what());
  } catch (...) {
    fs::remove_all(temp, ec);
    throw;
  }
  return final_path.string();
}

std::string resolve_checkpoint(const std::string& path) {
  const fs::path p(path);
  std::error_code ec;
  if (!fs::is_directory(p, ec)) throw CheckpointError(path, "is not a checkpoint folder");
  if (fs::exists(p / "state.json", ec)) return path;
  std::string best;
  for (const auto& entry : fs::directory_iterator(p, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && name.rfind("step-", 0) == 0 && name > best) best = name;
  }
  if (best.empty()) {
    throw CheckpointError(path, "holds no checkpoint (neither state.json nor a step-* folder)");
  }
  return (p / best).string();
}

namespace {

// state.json, parsed, of the right format and version, its own checksum verified.
nlohmann::json read_state(const std::string& state_file) {
  nlohmann::json state;
  try {
    state = nlohmann::json::parse(read_all(state_file));
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(state_file, std::string("corrupt or truncated JSON: ") + e.what());
  }
  try {
    if (!state.is_object() || state.value("format", "") != kFormat) {
      throw CheckpointError(state_file, "is not a lighthouse train checkpoint");
    }
    if (state.at("version").get<int>() != kVersion) {
      throw CheckpointError(state_file, "has version " + state.at("version").dump() +
                                            "; this build reads version " +
                                            std::to_string(kVersion));
    }
    const std::string want = state.at("checksum").get<std::string>();
    if (state_checksum(state) != want) {
      throw CheckpointError(state_file, "checksum mismatch (the file was modified or corrupted)");
    }
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(state_file, std::string("missing or malformed field: ") + e.what());
  }
  return state;
}

// One of the folder's files, its size and FNV-64 checked against state.json's record.
std::string read_recorded_file(const fs::path& dir, const nlohmann::json& state, const char* name) {
  const std::string file = (dir / name).string();
  std::string bytes = read_all(file);
  try {
    const nlohmann::json& entry = state.at("files").at(name);
    const auto size = entry.at("bytes").get<std::uint64_t>();
    if (bytes.size() != size) {
      throw CheckpointError(file, "truncated or extended: " + std::to_string(bytes.size()) +
                                      " bytes, the checkpoint recorded " + std::to_string(size));
    }
    const std::string got = hex64(fnv64(bytes.data(), bytes.size()));
    if (got != entry.at("fnv64").get<std::string>()) {
      throw CheckpointError(file, "checksum mismatch: FNV-64 " + got + ", recorded " +
                                      entry.at("fnv64").get<std::string>() + " (corrupted)");
    }
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError((dir / "state.json").string(),
                          std::string("missing or malformed field: ") + e.what());
  }
  return bytes;
}

// The weights' model config equals `config` (else the field, both values and the first tensor
// whose shape differs).
void check_model_config(const SafetensorsFile& weights, const std::string& model_file,
                        const ModelConfig& config, const LanguageModel& model) {
  for (const auto& [key, value] : model_metadata(config)) {
    const auto it = weights.metadata.find(key);
    const std::string saved = it == weights.metadata.end() ? "(missing)" : it->second;
    if (saved != value) {
      throw CheckpointError(model_file, "model config differs: " + key + " = " + saved +
                                            " in the checkpoint, " + value + " in this run" +
                                            first_shape_difference(weights, model));
    }
  }
}

}  // namespace

std::int64_t load_checkpoint(Trainer& trainer, const std::string& folder) {
  const fs::path dir(folder);
  const std::string state_file = (dir / "state.json").string();
  const nlohmann::json state = read_state(state_file);
  const TrainConfig& c = trainer.config();
  std::int64_t step = 0;
  std::uint64_t rng_state = 0, position = 0;
  std::map<std::string, std::string> files;  // name -> bytes
  for (const char* name : {"model.safetensors", "optimizer.safetensors"}) {
    files[name] = read_recorded_file(dir, state, name);
  }
  try {
    const nlohmann::json& run = state.at("run");
    auto same = [&](const char* key, std::int64_t have) {
      const auto saved = run.at(key).get<std::int64_t>();
      if (saved != have) {
        throw CheckpointError(state_file, std::string("was written by a run with ") + key + " = " +
                                              std::to_string(saved) + ", this run has " +
                                              std::to_string(have));
      }
    };
    same("seq", c.seq);
    same("batch", c.batch * c.dp);  // the whole batch, every group's
    same("accum", c.accum);
    same("stage1_steps", c.stage1_steps);
    const TokenStream& data = trainer.packer().stream();
    if (state.at("data_tokens").get<std::uint64_t>() != data.size() ||
        state.at("data_fnv64").get<std::string>() != hex64(stream_hash(data))) {
      throw CheckpointError(state_file, "was trained on other data (" +
                                            state.at("data_tokens").dump() + " tokens, FNV-64 " +
                                            state.at("data_fnv64").dump() + "; this run has " +
                                            std::to_string(data.size()) + " tokens, FNV-64 " +
                                            hex64(stream_hash(data)) + ")");
    }
    step = state.at("step").get<std::int64_t>();
    if (step < 0 || step > trainer.total_steps()) {
      throw CheckpointError(state_file, "step " + std::to_string(step) + " is past this run's " +
                                            std::to_string(trainer.total_steps()) + " steps");
    }
    if (state.at("optimizer_steps").get<std::int64_t>() != step) {
      throw CheckpointError(state_file, "optimizer_steps differs from step");
    }
    rng_state = std::stoull(state.at("rng_state").get<std::string>());
    position = std::stoull(state.at("data_position").get<std::string>());
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(state_file, std::string("missing or malformed field: ") + e.what());
  } catch (const std::logic_error& e) {  // stoull
    throw CheckpointError(state_file, std::string("malformed number: ") + e.what());
  }

  // Parse both files fully and check them against the model before changing anything.
  const std::string model_file = (dir / "model.safetensors").string();
  const std::string opt_file = (dir / "optimizer.safetensors").string();
  const SafetensorsFile weights =
      decode_safetensors(model_file, std::move(files["model.safetensors"]));
  const SafetensorsFile moments =
      decode_safetensors(opt_file, std::move(files["optimizer.safetensors"]));
  check_model_config(weights, model_file, c.model, trainer.model());
  LanguageModel& model = trainer.model();
  const std::size_t expected = 2 * model.params().size();
  if (moments.tensors.size() != expected) {
    throw CheckpointError(opt_file, "holds " + std::to_string(moments.tensors.size()) +
                                        " tensors, the model needs " + std::to_string(expected));
  }
  LanguageModel::OptimizerState opt;
  opt.steps = step;
  std::vector<std::vector<float>> values;
  for (const ParamInfo& p : model.params()) {
    const auto n = static_cast<std::size_t>(p.numel());
    values.emplace_back(n);
    opt.m.emplace_back(n);
    opt.v.emplace_back(n);
    weights.read(model_file, p.name, p.shape, values.back().data());
    moments.read(opt_file, "m." + p.name, p.shape, opt.m.back().data());
    moments.read(opt_file, "v." + p.name, p.shape, opt.v.back().data());
  }
  model.write_params(values);
  model.write_optimizer(opt);
  trainer.rng().set_state(rng_state);
  trainer.restore(step, position);
  return step;
}

void load_weights(LanguageModel& model, const ModelConfig& config, const std::string& folder) {
  const fs::path dir(folder);
  const nlohmann::json state = read_state((dir / "state.json").string());
  const std::string model_file = (dir / "model.safetensors").string();
  const SafetensorsFile weights =
      decode_safetensors(model_file, read_recorded_file(dir, state, "model.safetensors"));
  check_model_config(weights, model_file, config, model);
  std::vector<std::vector<float>> values;
  for (const ParamInfo& p : model.params()) {
    values.emplace_back(static_cast<std::size_t>(p.numel()));
    weights.read(model_file, p.name, p.shape, values.back().data());
  }
  model.write_params(values);
}

}  // namespace lighthouse::train
