// Runs the library's forward (and backward) on host data through the public API only, and
// brings every result back as plain vectors for comparison.
#pragma once

#include <cstdint>
#include <vector>

#include "lighthouse/attention.hpp"
#include "support/reference.hpp"

namespace lhtest {

// One attention problem: configuration, sizes and float32-representable inputs.
struct Problem {
  lighthouse::Config config;
  Shape shape;
  std::vector<double> q, k, v, dout;
};

// Random inputs (q and k with varied row norms, normal v and dout) from one seed.
Problem random_problem(const lighthouse::Config& config, const Shape& shape, std::uint64_t seed);

struct Outputs {
  lighthouse::Plan plan;
  std::vector<std::int32_t> indices;    // [B, H, S]
  std::vector<double> out, dq, dk, dv;  // [B, N, H, D]; dq/dk/dv empty without backward
};

// forward() (+ backward() with `problem.dout`) on the CPU in `dtype`. Outputs and gradients
// start as NaN so that a value the library fails to write shows up.
Outputs run_library(const Problem& problem, lighthouse::DType dtype,
                    const lighthouse::Options& options = {}, bool with_backward = true);

}  // namespace lhtest
