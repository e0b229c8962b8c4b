#pragma once

namespace lighthouse {
inline constexpr const char* kVersion = "0.1.0";
}  // namespace lighthouse
