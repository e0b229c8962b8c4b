// FNV-1a, 64-bit: the checksum of checkpoint payloads. Not cryptographic; it catches truncation,
// flipped bytes and files swapped between checkpoints, which is all a checkpoint needs.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace lighthouse::train {

inline std::uint64_t fnv64(const void* data, std::size_t bytes,
                           std::uint64_t hash = 0xcbf29ce484222325ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) hash = (hash ^ p[i]) * 0x100000001b3ull;
  return hash;
}

inline std::string hex64(std::uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(v));
  return text;
}

}  // namespace lighthouse::train
