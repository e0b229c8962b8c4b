// All-or-nothing output of a run: each .npy file is first written (atomically) under a hidden
// temporary name in the output folder, and only when every file is there are they renamed to
// their final names. If anything fails before commit() returns -- or the object is destroyed
// without commit() -- every file this run wrote and every folder it created is removed, so no
// partial output remains.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "lighthouse/tensor.hpp"

namespace lighthouse::cli {

class StagedOutputs {
 public:
  explicit StagedOutputs(std::filesystem::path folder);  // touches nothing yet
  ~StagedOutputs();
  StagedOutputs(const StagedOutputs&) = delete;
  StagedOutputs& operator=(const StagedOutputs&) = delete;

  // Creates the folder (and missing parents) on first use, then writes the temporary file.
  void add(const std::string& name, DType dtype, const std::vector<std::int64_t>& shape,
           const void* data);
  // Renames every staged file to its final name.
  void commit();

 private:
  struct Staged {
    std::filesystem::path temp, final;
  };
  void create_folder();
  void roll_back() noexcept;

  std::filesystem::path folder_;
  std::vector<std::filesystem::path> created_folders_;  // deepest first
  std::vector<Staged> staged_;
  std::vector<std::filesystem::path> committed_;
  bool folder_ready_ = false;
  bool done_ = false;
};

}  // namespace lighthouse::cli
