// Runs the library end to end through its public API, on either device, from float host data:
// the GPU tests compare the CUDA backend with the CPU backend, the golden cases, the float64
// reference (tests/support/reference.hpp) and itself (other layouts, other runs). Inputs are
// float32 values, rounded to the run's dtype where a test asks for it, so that every backend and
// the reference see the same numbers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lighthouse/lighthouse.hpp"
#include "support/reference.hpp"

namespace lighthouse::testing {

using Shape = lhtest::Shape;  // [B, N, H, D]

struct Inputs {
  Shape shape;
  std::vector<float> q, k, v, dout;
};

// Normal(0, 1) q, k, v and dout from one seed.
Inputs random_inputs(Shape s, std::uint32_t seed);

// Rounds every value to `dtype` (round to nearest even; float32 and float64 keep them).
void round_to(std::vector<float>& x, DType dtype);
void round_inputs(Inputs& in, DType dtype);

struct Outputs {
  std::vector<std::int32_t> indices;   // [B, H, S]
  std::vector<float> out, dq, dk, dv;  // [B, N, H, D]; the gradients empty without backward
  StageTimes forward_times, backward_times;
};

struct RunFlags {
  bool backward = true;
  bool strided = false;         // q, k, v and out as [B, N, H, D] views of [B, H, N, D] buffers
  bool strided_grads = false;   // the same for dout, dq, dk and dv
  bool timed = false;           // fill the stage times
  bool deterministic = true;    // Options::deterministic
  bool context_buffer = false;  // the context in caller memory (ContextBuffer), not a Context
  bool out_in_q = false;        // out is q's buffer (attention written over q)
  bool dout_in_dq = false;      // dq is dout's buffer (the gradient written over dout)
  bool check_finite = false;    // Options::check_finite
  // Packed documents (docs/SPEC.md): the offsets passed as cu_seqlens (int32 on the run's
  // device); empty: one sequence per row. With context_buffer the indices are not read back.
  std::vector<std::int32_t> cu_seqlens = {};
};

// forward() (and backward() with in.dout) on `device` in `dtype`.
Outputs run(const Inputs& in, Device device, DType dtype, const Config& cfg,
            const RunFlags& flags = {});

// ||a - ref|| / ||ref|| in float64.
double rel_l2(const std::vector<float>& a, const std::vector<float>& ref);
bool bits_equal(const std::vector<float>& a, const std::vector<float>& b);
// rel_l2 of out, dq, dk and dv below `tol`, as gtest expectations.
void expect_close(const Outputs& got, const Outputs& ref, double tol, const std::string& what);

// Where two index lists first differ, for failure messages.
std::string first_difference(const std::vector<std::int32_t>& a,
                             const std::vector<std::int32_t>& b);

bool cpu_available();

// The selection of the float64 reference (tests/support/reference.hpp, scores as both backends
// compute them) on these inputs: [B, H, S], for sizes where the CPU backend would be too slow.
std::vector<std::int32_t> reference_indices(const Inputs& in, const Config& cfg);

// A configuration and its sizes.
struct Case {
  Shape shape;
  int levels, pool, topk;
};
Config config_of(const Case& c);
Config causal_of(const Case& c);  // the same with selection = causal (docs/SPEC.md)
std::string name_of(const Case& c);

// The selection kernels' size classes, shared by the causal and stride suites: small candidate
// lists, a coarsest level of 2048 (staged keys) and of 32768 (two rounds of 16384 eligibility
// bits), p = 2..16, 2..4 levels, several tiles, B, H > 1, a head dim of 20, N up to 65536.
const std::vector<Case>& selection_size_classes();

// The GPU's fp32 run against the CPU backend's on the same inputs: the same indices (else a
// failure naming the first difference) and, with `backward`, outputs and gradients to float32
// rounding (without it, indices only). Returns the GPU's outputs.
Outputs expect_gpu_matches_cpu(const Inputs& in, const Config& cfg, bool backward,
                               const std::string& what);

// On `in` rounded to bf16, the GPU's bf16 run selects what the CPU's fp32 run selects on the same
// rounded values (indices only).
void expect_bf16_selects_like_cpu(const Inputs& in, const Config& cfg);

// Inputs with many equal scores, for the tie rule: random_inputs(s, seed) with q and k replaced,
// mode 0 by entries in {-1, 0, 1} (few distinct norms), mode 1 by the signs (all norms equal),
// drawn from tie_seed.
Inputs tied_inputs(Shape s, int mode, std::uint32_t seed, std::uint32_t tie_seed);

}  // namespace lighthouse::testing
