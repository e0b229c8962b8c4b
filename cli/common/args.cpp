#include "common/args.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace lighthouse::cli {

void require_given(const std::string& flag, const std::string& text) {
  if (text.empty()) throw InvalidArgument(flag, "(missing)", "is required");
}

std::int64_t parse_int(const std::string& flag, const std::string& text, std::int64_t min,
                       std::int64_t max) {
  std::string digits = text;
  std::int64_t multiplier = 1;
  if (!digits.empty()) {
    const char last = digits.back();
    if (last == 'k' || last == 'K') multiplier = 1024;
    if (last == 'm' || last == 'M') multiplier = 1024 * 1024;
    if (multiplier != 1) digits.pop_back();
  }
  std::int64_t value = 0;
  const char* begin = digits.data();
  const char* end = begin + digits.size();
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (digits.empty() || ec != std::errc() || ptr != end) reject(flag, text, "must be an integer");
  if (value > std::numeric_limits<std::int64_t>::max() / multiplier ||
      value < std::numeric_limits<std::int64_t>::min() / multiplier) {
    reject(flag, text, "is out of range");
  }
  value *= multiplier;
  if (value < min) reject(flag, text, "must be >= " + std::to_string(min));
  if (value > max) reject(flag, text, "must be <= " + std::to_string(max));
  return value;
}

int parse_int32(const std::string& flag, const std::string& text, int min, int max) {
  return static_cast<int>(parse_int(flag, text, min, max));
}

double parse_positive_double(const std::string& flag, const std::string& text) {
  // strtod accepts what a user would type ("0.125", "1e-2"); the whole string must be used.
  char* end = nullptr;
  const double value = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size()) reject(flag, text, "must be a number");
  if (!std::isfinite(value) || value <= 0) reject(flag, text, "must be a finite number > 0");
  return value;
}

double parse_double(const std::string& flag, const std::string& text, double min, double max) {
  char* end = nullptr;
  const double value = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size()) reject(flag, text, "must be a number");
  if (!std::isfinite(value) || value < min || value > max) {
    std::ostringstream rule;
    rule << "must be a finite number in [" << min << ", " << max << "]";
    reject(flag, text, rule.str());
  }
  return value;
}

std::vector<std::string> split_list(const std::string& flag, const std::string& text) {
  std::vector<std::string> items;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = text.find(',', start);
    const std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (item.empty()) reject(flag, text, "must be a comma-separated list without empty entries");
    items.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return items;
}

}  // namespace lighthouse::cli
