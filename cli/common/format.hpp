// Small formatting helpers shared by the subcommands' human-readable output.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lighthouse::cli {

std::string shape_text(const std::vector<std::int64_t>& shape);  // "[1, 4096, 2, 32]"
std::string bytes_text(double bytes);                            // "160.0 MiB"
std::string flops_text(double flops);                            // "1.23 TFLOP"
std::string fixed(double value, int decimals);                   // "%.<decimals>f"
std::string pad_left(const std::string& text, std::size_t width);
std::string pad_right(const std::string& text, std::size_t width);

}  // namespace lighthouse::cli
