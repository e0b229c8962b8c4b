// The CPU backend: exact float32/float64 Lighthouse attention, multithreaded with OpenMP.
#pragma once

#include <memory>

#include "core/backend.hpp"

namespace lighthouse::cpu {

std::unique_ptr<Backend> make_backend();

}  // namespace lighthouse::cpu
