// Runs the library's forward (and backward) on host data through the public API only, and
// brings every result back as plain vectors for comparison.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
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

// A parameterised test's case: a name, sizes and the configuration's fields.
struct ShapeCase {
  const char* name;
  Shape shape;
  std::int64_t kv_heads;  // 0: shape.H
  int levels, pool, topk;
  lighthouse::Selection selection = lighthouse::Selection::kOriginal;
  lighthouse::Scorer scorer = lighthouse::Scorer::kNorm;
  int dilation = 4;

  lighthouse::Config config() const {
    lighthouse::Config c = make_config(levels, pool, topk);
    c.selection = selection;
    c.scorer = scorer;
    c.dilation = dilation;
    return c;
  }
};

// gtest's test-name generator for ShapeCase parameters: the case's name.
inline std::string shape_case_name(const ::testing::TestParamInfo<ShapeCase>& info) {
  return info.param.name;
}

// forward() (+ backward() with `problem.dout`) on the CPU in `dtype`. Outputs and gradients
// start as NaN so that a value the library fails to write shows up.
Outputs run_library(const Problem& problem, lighthouse::DType dtype,
                    const lighthouse::Options& options = {}, bool with_backward = true);

}  // namespace lhtest
