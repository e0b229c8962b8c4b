#include "common/staged_outputs.hpp"

#include <unistd.h>

#include <system_error>

#include "lighthouse/error.hpp"
#include "lighthouse/npy.hpp"

namespace lighthouse::cli {

namespace fs = std::filesystem;

StagedOutputs::StagedOutputs(fs::path folder) : folder_(std::move(folder)) {}

StagedOutputs::~StagedOutputs() {
  if (!done_) roll_back();
}

void StagedOutputs::create_folder() {
  // Remember which folders did not exist, so that a failed run removes exactly those.
  std::error_code ec;
  for (fs::path p = fs::absolute(folder_, ec); !p.empty() && !fs::exists(p, ec);
       p = p.parent_path()) {
    created_folders_.push_back(p);
    if (p == p.parent_path()) break;
  }
  fs::create_directories(folder_, ec);
  if (ec) throw Error(folder_.string() + ": cannot create the output folder: " + ec.message());
  folder_ready_ = true;
}

void StagedOutputs::add(const std::string& name, DType dtype,
                        const std::vector<std::int64_t>& shape, const void* data) {
  if (!folder_ready_) create_folder();
  Staged s{folder_ / ("." + name + ".partial-" + std::to_string(::getpid())), folder_ / name};
  staged_.push_back(s);  // before writing: a failed write may leave the file behind
  write_npy(s.temp.string(), dtype, shape, data);
}

void StagedOutputs::commit() {
  for (const Staged& s : staged_) {
    std::error_code ec;
    fs::rename(s.temp, s.final, ec);
    if (ec) {
      throw Error(s.final.string() + ": cannot move the finished file into place: " + ec.message());
    }
    committed_.push_back(s.final);
  }
  done_ = true;
}

void StagedOutputs::roll_back() noexcept {
  std::error_code ec;
  for (const Staged& s : staged_) fs::remove(s.temp, ec);
  for (const fs::path& p : committed_) fs::remove(p, ec);
  // Only folders this run created, deepest first, and only if empty (fs::remove never
  // deletes a non-empty folder).
  for (const fs::path& p : created_folders_) fs::remove(p, ec);
}

}  // namespace lighthouse::cli
