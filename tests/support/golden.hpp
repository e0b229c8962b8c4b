// The golden cases of the original implementation (tests/data/README.md): where they are, which
// of them this library can run, and one loader for every C++ test that reads them.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "lighthouse/config.hpp"
#include "support/reference.hpp"

namespace lhtest {

// One case as the original wrote it: float32 tensors [B, N, H, D], indices [B, H, S].
struct GoldenCase {
  std::string name;           // the folder's name (g2, g5, d1, ...)
  lighthouse::Config config;  // levels, pool, topk, and config.json's scorer and dilation
  Shape shape;
  std::vector<float> q, k, v, dout, out, dq, dk, dv;
  std::vector<std::int32_t> indices;
};

// The folders searched: LIGHTHOUSE_GOLDEN_DIR from the environment when set (one folder or
// several separated by ':'), else the ones the build was configured with (tests/data/golden and
// tests/data/golden-dilated).
std::vector<std::filesystem::path> golden_roots();
std::string golden_roots_text();  // for messages: the roots joined by ':'

// Every case folder (a sub-folder with a config.json) under the roots that this library can
// run, in name order. config.json's "scorer" (absent means norm) must be one the library
// implements ("norm" or "dilated"); cases of another scorer are left out, each with a line on
// stderr saying so.
std::vector<std::filesystem::path> golden_case_dirs(
    const std::vector<std::filesystem::path>& roots = golden_roots());

// Reads a case; throws std::runtime_error naming the file and what is wrong (missing file,
// dtype or shape other than config.json's).
GoldenCase load_golden(const std::filesystem::path& dir);

// True under CI (CI=true or CI=1 in the environment): a golden test without cases fails there.
bool ci_strict();

}  // namespace lhtest

// In a TEST body, after `dirs = lhtest::golden_case_dirs()`: with no case, fails under CI and
// skips, loudly, elsewhere. The comparison with the original must never pass by not running.
#define LHTEST_REQUIRE_GOLDEN(dirs)                                                         \
  do {                                                                                      \
    if ((dirs).empty()) {                                                                   \
      const std::string lhtest_where = ::lhtest::golden_roots_text();                       \
      if (::lhtest::ci_strict()) {                                                          \
        GTEST_FAIL() << "no golden cases under '" << lhtest_where                           \
                     << "' and CI is set: the comparison with the original must run in CI " \
                        "(tests/data/golden, or LIGHTHOUSE_GOLDEN_DIR)";                    \
      }                                                                                     \
      std::fprintf(stderr,                                                                  \
                   "WARNING: no golden cases under '%s': the comparison with the original " \
                   "implementation was NOT run\n",                                          \
                   lhtest_where.c_str());                                                   \
      GTEST_SKIP() << "no golden cases under '" << lhtest_where                             \
                   << "': NOT CHECKED AGAINST THE ORIGINAL";                                \
    }                                                                                       \
  } while (0)
