#include "cpu/backend.hpp"

#include <stdexcept>

namespace lighthouse::cpu {

// Temporary: replaced by the real backend.
std::unique_ptr<Backend> make_backend() {
  return nullptr;
}

}  // namespace lighthouse::cpu
