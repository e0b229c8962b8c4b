// Turning command-line text into checked values. Every rejection is a lighthouse::InvalidArgument
// whose parameter is the flag as typed ("--levels"), so that main() can print
// "lighthouse <cmd>: error: --levels = x: <rule>" and exit with status 2.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "lighthouse/error.hpp"

namespace lighthouse::cli {

// Exit statuses of every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;  // lighthouse::Error: I/O, device, out of memory
inline constexpr int kExitUsage = 2;    // bad flags or bad input files

[[noreturn]] inline void reject(const std::string& flag, const std::string& value,
                                const std::string& rule) {
  throw InvalidArgument(flag, value.empty() ? "\"\"" : value, rule);
}

// Throws unless the flag was given (its text is non-empty).
void require_given(const std::string& flag, const std::string& text);

// A whole decimal integer in [min, max]. A trailing k or m multiplies by 1024 or 1024^2, so that
// sequence lengths can be written "64k".
std::int64_t parse_int(const std::string& flag, const std::string& text,
                       std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                       std::int64_t max = std::numeric_limits<std::int64_t>::max());

// Like parse_int, but the result must fit an int (the library's Config fields are int).
int parse_int32(const std::string& flag, const std::string& text,
                int min = std::numeric_limits<int>::min(),
                int max = std::numeric_limits<int>::max());

// A finite number > 0.
double parse_positive_double(const std::string& flag, const std::string& text);

// A finite number in [min, max].
double parse_double(const std::string& flag, const std::string& text, double min, double max);

// "a,b,c" -> {"a", "b", "c"}; empty entries are rejected.
std::vector<std::string> split_list(const std::string& flag, const std::string& text);

}  // namespace lighthouse::cli
