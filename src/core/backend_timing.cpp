// The default Backend::time_ms: wall-clock time between two synchronisations (exact for the
// CPU backend, whose calls return when their work is done).
#include <chrono>

#include "core/backend.hpp"

namespace lighthouse {

double Backend::time_ms(const std::function<void()>& work) {
  synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  work();
  synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace lighthouse
