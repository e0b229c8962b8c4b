#include "cuda/checks.hpp"

#include <cstdint>
#include <cstdio>
#include <string>

#include "cuda/check.hpp"
#include "cuda/stages.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cuda {

void check_supported(const Plan& plan, DType dtype) {
  const std::int64_t d = plan.head_dim;
  switch (dtype) {
    case DType::kBFloat16:
    case DType::kFloat16:
      if (d % 8 != 0 || d < 8 || d > 128) {
        throw InvalidArgument("head_dim", std::to_string(d),
                              std::string("must be a multiple of 8 between 8 and 128 for ") +
                                  dtype_name(dtype) + " on CUDA (cuDNN fused attention)");
      }
      break;
    case DType::kFloat32:
      if (d % 4 != 0 || d < 4 || d > 256) {
        throw InvalidArgument("head_dim", std::to_string(d),
                              "must be a multiple of 4 between 4 and 256 for float32 on CUDA");
      }
      break;
    default:
      throw InvalidArgument("dtype", dtype_name(dtype),
                            "the CUDA backend supports bfloat16, float16 and float32");
  }
  if (plan.config.levels > kMaxLevels) {
    throw InvalidArgument("levels", std::to_string(plan.config.levels),
                          "must be at most " + std::to_string(kMaxLevels) + " on CUDA");
  }
  if (plan.config.levels > 1 && plan.config.pool > 64) {
    throw InvalidArgument("pool", std::to_string(plan.config.pool),
                          "must be at most 64 on CUDA (a tile's pool * 128 candidates are "
                          "tracked in shared memory)");
  }
  if (plan.pyramid_size > INT32_MAX) {
    throw InvalidArgument("seq", std::to_string(plan.seq),
                          "too long for CUDA: the pyramid's " + std::to_string(plan.pyramid_size) +
                              " entries per (batch, head) exceed int32 indices");
  }
}

void check_layout(const char* name, const TensorView& t) {
  const std::int64_t vec = 16 / static_cast<std::int64_t>(dtype_size(t.dtype));
  if (reinterpret_cast<std::uintptr_t>(t.data) % 16 != 0) {
    char address[32];
    std::snprintf(address, sizeof address, "%p", t.data);
    throw InvalidArgument(std::string(name) + ".data", address,
                          "must be 16-byte aligned on CUDA (rows are read as 16-byte vectors)");
  }
  if (t.strides[3] != 1) {
    throw InvalidArgument(std::string(name) + ".stride[3]", std::to_string(t.strides[3]),
                          "the head dimension must be contiguous");
  }
  for (int d = 0; d < 3; ++d) {
    if (t.shape[d] > 1 && t.strides[d] % vec != 0) {
      throw InvalidArgument(
          std::string(name) + ".stride[" + std::to_string(d) + "]", std::to_string(t.strides[d]),
          "must be a multiple of " + std::to_string(vec) + " elements (16 bytes) on CUDA");
    }
  }
}

void check_finite(const char* name, const TensorView& t, cudaStream_t stream) {
  unsigned* count = nullptr;
  CUDA_CHECK(cudaMallocAsync(&count, sizeof(unsigned), stream));
  unsigned host = 0;
  try {
    CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof(unsigned), stream));
    launch_count_nonfinite(t.dtype, token_tensor(t), t.shape[0], t.shape[1], t.shape[2], t.shape[3],
                           count, stream);
    CUDA_CHECK(cudaMemcpyAsync(&host, count, sizeof(unsigned), cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
  } catch (...) {
    cudaFreeAsync(count, stream);
    throw;
  }
  CUDA_CHECK(cudaFreeAsync(count, stream));
  if (host > 0) {
    throw InvalidArgument(name, std::to_string(host) + " NaN/Inf values",
                          "must be finite (check_finite is on)");
  }
}

void check_forward_inputs(const Plan& plan, const TensorView& q, const TensorView& k,
                          const TensorView& v, const TensorView& out, const Options& options) {
  check_supported(plan, q.dtype);
  check_layout("q", q);
  check_layout("k", k);
  check_layout("v", v);
  check_layout("out", out);
  if (options.check_finite) {
    const auto stream = static_cast<cudaStream_t>(options.stream);
    check_finite("q", q, stream);
    check_finite("k", k, stream);
    check_finite("v", v, stream);
  }
}

void check_backward_layouts(const TensorView& dout, const TensorView& dq, const TensorView& dk,
                            const TensorView& dv) {
  check_layout("dout", dout);
  check_layout("dq", dq);
  check_layout("dk", dk);
  check_layout("dv", dv);
}

}  // namespace lighthouse::cuda
