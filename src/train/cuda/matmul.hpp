// Row-major matrix products on cuBLASLt for the CUDA model:
//   D[m x n] = op(A)[m x k] * op(B)[k x n] + beta * C,   op(X) = X or X^T,
// with the CPU trainer's conventions (weights [in, out], y = x W; see train/matmul.hpp).
//  - bf16 A and B with fp32 accumulation, D (and C) bf16 or fp32: the projections write bf16
//    activations; the residual adds (beta = 1 onto the fp32 residual stream, C and D distinct)
//    and the parameter gradients (beta = 1 onto the fp32 accumulators) write fp32.
//  - fp32 A, B, C and D: CUBLAS_COMPUTE_32F, true fp32 (TF32 off), for the fp32 equality tests.
// cuBLASLt's heuristic picks one algorithm per (shape, leading dimensions, dtypes, alignments),
// cached, so a shape always runs the same algorithm: results are bitwise reproducible (cuBLASLt's
// split-K reductions are ordered, none uses atomics). One workspace serves every call.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "lighthouse/tensor.hpp"
#include "train/cuda/device_memory.hpp"
#include "train/matmul.hpp"  // Trans

namespace lighthouse::train::cuda {

// A row-major matrix as stored: data, dtype and leading dimension (elements from one stored row
// to the next; at least the stored row length).
struct Operand {
  const void* data = nullptr;
  DType dtype = DType::kBFloat16;
  std::int64_t ld = 0;
};

// One distinct product shape and how often it ran (the benchmark replays the mix).
struct MatmulShape {
  Trans ta = Trans::kNo, tb = Trans::kNo;
  std::int64_t m = 0, n = 0, k = 0;
  DType in = DType::kBFloat16, out = DType::kBFloat16;
  bool accumulate = false;  // beta = 1
  std::int64_t calls = 0;
  double flops() const { return 2.0 * static_cast<double>(m) * static_cast<double>(n) * k; }
};

class Matmul {
 public:
  static constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;  // Hopper's recommendation

  explicit Matmul(cudaStream_t stream);
  ~Matmul();
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;

  // D = op(A) op(B) + beta * C; beta is 0 or 1. C has D's dtype and leading dimension and may be
  // D itself (in-place accumulation) or another buffer (out of place, e.g. x + attn Wo -> xmid);
  // with beta = 0 it is not read (pass null). Throws lighthouse::Error naming the failing call.
  void run(Trans ta, Trans tb, std::int64_t m, std::int64_t n, std::int64_t k, const Operand& a,
           const Operand& b, float beta, const void* c, void* d, DType d_dtype, std::int64_t ldd);

  // Every distinct shape run since the last call, with its count (and resets the counts).
  std::vector<MatmulShape> take_shapes();

 private:
  struct Plan;  // descriptors and the chosen algorithm of one key
  using Key = std::tuple<int, int, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                         std::int64_t, std::int64_t, int, int, int, int, int, int, int>;
  Plan& plan_for(const Key& key);

  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  DeviceArray workspace_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  std::map<std::tuple<int, int, std::int64_t, std::int64_t, std::int64_t, int, int, int>,
           MatmulShape>
      shapes_;
};

}  // namespace lighthouse::train::cuda
