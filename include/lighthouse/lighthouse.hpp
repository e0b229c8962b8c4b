// Lighthouse attention: the whole public API but NPY I/O, whose header users include where
// they read or write .npy files.
#pragma once

#include "lighthouse/attention.hpp"
#include "lighthouse/communicator.hpp"
#include "lighthouse/config.hpp"
#include "lighthouse/context_parallel.hpp"
#include "lighthouse/device.hpp"
#include "lighthouse/error.hpp"
#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"
#include "lighthouse/version.hpp"
