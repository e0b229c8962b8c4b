// Runs an AttentionCase through sdpa_forward + sdpa_backward on the GPU and brings the results
// back as float32 buffers in the case's layouts.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "support/attention_case.hpp"

namespace lighthouse::testing {

struct GpuAttention {
  std::vector<float> o, stats, dq, dk, dv;
  // The raw storage (bf16/fp16 bits, or float bits for float32), for bitwise comparisons.
  std::vector<std::uint8_t> raw_o, raw_stats, raw_dq, raw_dk, raw_dv;
};

// Runs the case in desc.dtype (bf16/fp16: cuDNN; float32: the reference kernels). The forward
// runs on `forward_stream` and the backward on `backward_stream` (both may be the same).
GpuAttention run_sdpa(const AttentionCase& problem, cudaStream_t forward_stream = nullptr,
                      cudaStream_t backward_stream = nullptr);

// The same data with dtype float32 (the values are exactly representable, nothing is lost).
AttentionCase as_float32(AttentionCase problem);

// An owning CUDA stream.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace lighthouse::testing
