#include "support/golden.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "lighthouse/npy.hpp"

#ifndef LIGHTHOUSE_GOLDEN_DIR
#error "LIGHTHOUSE_GOLDEN_DIR must name the default folder of golden cases (tests/CMakeLists.txt)"
#endif

namespace lhtest {

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> split_paths(const std::string& list) {
  std::vector<fs::path> paths;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t end = std::min(list.find(':', start), list.size());
    if (end > start) paths.emplace_back(list.substr(start, end - start));
    start = end + 1;
  }
  return paths;
}

// The scorer a case was made with.
std::string scorer_of(const fs::path& dir) {
  std::ifstream file(dir / "config.json");
  const nlohmann::json json = nlohmann::json::parse(file, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return "norm";  // load_golden reports the broken file
  return json.value("scorer", std::string("norm"));
}

std::vector<float> load_floats(const fs::path& file, const Shape& shape) {
  const lighthouse::NpyArray a = lighthouse::read_npy(file.string());
  const std::vector<std::int64_t> want{shape.B, shape.N, shape.H, shape.D};
  if (a.dtype != lighthouse::DType::kFloat32 || a.shape != want) {
    throw std::runtime_error(file.string() + ": expected float32 [B, N, H, D] as in config.json");
  }
  return std::vector<float>(a.data<float>(), a.data<float>() + a.numel());
}

}  // namespace

bool ci_strict() {
  const char* ci = std::getenv("CI");
  if (ci == nullptr) return false;
  const std::string value(ci);
  return value == "true" || value == "1";
}

std::vector<fs::path> golden_roots() {
  const char* env = std::getenv("LIGHTHOUSE_GOLDEN_DIR");
  return split_paths(env != nullptr && *env != '\0' ? env : LIGHTHOUSE_GOLDEN_DIR);
}

std::string golden_roots_text() {
  std::string text;
  for (const fs::path& root : golden_roots()) {
    if (!text.empty()) text += ':';
    text += root.string();
  }
  return text;
}

std::vector<fs::path> golden_case_dirs(const std::vector<fs::path>& roots) {
  std::vector<fs::path> dirs;
  for (const fs::path& root : roots) {
    std::error_code ec;
    if (!fs::is_directory(root, ec)) continue;
    for (const auto& entry : fs::directory_iterator(root, ec)) {
      if (!entry.is_directory() || !fs::exists(entry.path() / "config.json")) continue;
      const std::string scorer = scorer_of(entry.path());
      if (scorer != "norm" && scorer != "dilated") {
        std::fprintf(stderr, "[ golden   ] %s: scorer '%s' is not implemented: case not run\n",
                     entry.path().string().c_str(), scorer.c_str());
        continue;
      }
      dirs.push_back(entry.path());
    }
  }
  std::sort(dirs.begin(), dirs.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename() < b.filename(); });
  return dirs;
}

GoldenCase load_golden(const fs::path& dir) {
  std::ifstream file(dir / "config.json");
  if (!file) throw std::runtime_error((dir / "config.json").string() + ": cannot be read");
  const nlohmann::json json = nlohmann::json::parse(file);
  GoldenCase g;
  g.name = dir.filename().string();
  g.config.levels = json.at("levels").get<int>();
  g.config.pool = json.at("pool").get<int>();
  g.config.topk = json.at("topk").get<int>();
  g.config.scorer = lighthouse::parse_scorer(json.value("scorer", std::string("norm")));
  g.config.dilation = json.value("dilation", g.config.dilation);
  g.shape = {json.at("batch").get<std::int64_t>(), json.at("seq_len").get<std::int64_t>(),
             json.at("heads").get<std::int64_t>(), json.at("head_dim").get<std::int64_t>()};
  g.q = load_floats(dir / "q.npy", g.shape);
  g.k = load_floats(dir / "k.npy", g.shape);
  g.v = load_floats(dir / "v.npy", g.shape);
  g.dout = load_floats(dir / "dout.npy", g.shape);
  g.out = load_floats(dir / "out.npy", g.shape);
  g.dq = load_floats(dir / "dq.npy", g.shape);
  g.dk = load_floats(dir / "dk.npy", g.shape);
  g.dv = load_floats(dir / "dv.npy", g.shape);
  const fs::path indices = dir / "indices.npy";
  const lighthouse::NpyArray idx = lighthouse::read_npy(indices.string());
  if (idx.dtype != lighthouse::DType::kInt32 || idx.shape.size() != 3 ||
      idx.shape[0] != g.shape.B || idx.shape[1] != g.shape.H) {
    throw std::runtime_error(indices.string() + ": expected int32 [B, H, S] as in config.json");
  }
  g.indices.assign(idx.data<std::int32_t>(), idx.data<std::int32_t>() + idx.numel());
  return g;
}

}  // namespace lhtest
