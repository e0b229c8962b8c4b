// Runs the library's forward (and backward) on host data through the public API only, and
// brings every result back as plain vectors for comparison.
#pragma once

#include <cstdint>
#include <vector>

#include "lighthouse/attention.hpp"
#include "support/reference.hpp"

namespace lhtest {

// One attention problem: configuration, sizes and float32-representable inputs. k and v have
// kv_heads heads (0: shape.H; grouped-query attention otherwise), q and dout shape.H.
struct Problem {
  lighthouse::Config config;
  Shape shape;
  std::vector<double> q, k, v, dout;
  std::int64_t kv_heads = 0;
  // The shape of k and v (and dk, dv).
  Shape kv_shape() const { return {shape.B, shape.N, kv_heads ? kv_heads : shape.H, shape.D}; }
};

// Random inputs (q and k with varied row norms, normal v and dout) from one seed.
Problem random_problem(const lighthouse::Config& config, const Shape& shape, std::uint64_t seed,
                       std::int64_t kv_heads = 0);

struct Outputs {
  lighthouse::Plan plan;
  std::vector<std::int32_t> indices;    // [B, Hkv, S]
  std::vector<double> out, dq, dk, dv;  // [B, N, H, D] (dk, dv: Hkv heads); empty without backward
};

// forward() (+ backward() with `problem.dout`) on the CPU in `dtype`. Outputs and gradients
// start as NaN so that a value the library fails to write shows up.
Outputs run_library(const Problem& problem, lighthouse::DType dtype,
                    const lighthouse::Options& options = {}, bool with_backward = true);

}  // namespace lhtest
