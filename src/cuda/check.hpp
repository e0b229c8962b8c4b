// Status checks for CUDA, cuDNN and cuBLAS calls. Every failing call becomes a lighthouse::Error
// whose message names the call, where it was made and what the library said, e.g.
//   "cudaMemcpyAsync failed at pyramid.cu:88: cudaErrorInvalidValue: invalid argument".
// Usage: CUDA_CHECK(cudaMemcpyAsync(...)); CUDNN_CHECK(cudnnSetStream(...));
//        kernel<<<grid, block, 0, stream>>>(...); CUDA_CHECK_LAUNCH("kernel");
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>
#include <string_view>

#include "lighthouse/error.hpp"

namespace lighthouse::cuda::detail {

// "cudaMemcpyAsync(dst, src, n, kind, stream)" -> "cudaMemcpyAsync": the arguments are noise
// in a message, the function is what a reader looks up.
inline std::string_view call_name(std::string_view expr) {
  const auto paren = expr.find('(');
  return paren == std::string_view::npos ? expr : expr.substr(0, paren);
}

inline std::string_view file_name(std::string_view path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

[[noreturn]] inline void throw_failure(std::string_view what_failed, const char* file, int line,
                                       const std::string& reason) {
  std::string message(what_failed);
  message += " failed at ";
  message += file_name(file);
  message += ':';
  message += std::to_string(line);
  message += ": ";
  message += reason;
  throw Error(message);
}

inline void check_cuda(cudaError_t status, const char* expr, const char* file, int line) {
  if (status != cudaSuccess) {
    throw_failure(call_name(expr), file, line,
                  std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status));
  }
}

inline void check_cudnn(cudnnStatus_t status, const char* expr, const char* file, int line) {
  if (status != CUDNN_STATUS_SUCCESS) {
    throw_failure(call_name(expr), file, line, cudnnGetErrorString(status));
  }
}

inline void check_cublas(cublasStatus_t status, const char* expr, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw_failure(call_name(expr), file, line,
                  std::string(cublasGetStatusName(status)) + ": " + cublasGetStatusString(status));
  }
}

// A launch reports bad configurations (grid too large, too much shared memory) through
// cudaGetLastError; faults inside the kernel surface at the next synchronising call.
inline void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    throw_failure(std::string("launch of ") + kernel, file, line,
                  std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status));
  }
}

}  // namespace lighthouse::cuda::detail

#define CUDA_CHECK(call) ::lighthouse::cuda::detail::check_cuda((call), #call, __FILE__, __LINE__)
#define CUDNN_CHECK(call) ::lighthouse::cuda::detail::check_cudnn((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) \
  ::lighthouse::cuda::detail::check_cublas((call), #call, __FILE__, __LINE__)
#define CUDA_CHECK_LAUNCH(kernel) \
  ::lighthouse::cuda::detail::check_launch(kernel, __FILE__, __LINE__)
