// The status-check macros: a failure names the call, the file and line, and the library's
// reason. These failures happen with or without a GPU, so nothing here skips.
#include <gtest/gtest.h>

#include <string>

#include "cuda/check.hpp"
#include "lighthouse/error.hpp"

namespace {

// Starts with "<call> failed at check_test.cu:<line>: ".
void expect_message(const std::string& message, const std::string& call, int line) {
  const std::string prefix = call + " failed at check_test.cu:" + std::to_string(line) + ": ";
  EXPECT_EQ(message.rfind(prefix, 0), 0u)
      << "message: " << message << "\nwanted prefix: " << prefix;
  EXPECT_GT(message.size(), prefix.size()) << "no reason given: " << message;
}

TEST(CheckMacros, CudaNamesTheCall) {
  int line = 0;
  try {
    line = __LINE__ + 1;
    CUDA_CHECK(cudaSetDevice(-1));  // never a valid ordinal
    FAIL() << "cudaSetDevice(-1) succeeded";
  } catch (const lighthouse::Error& e) {
    expect_message(e.what(), "cudaSetDevice", line);
    EXPECT_NE(std::string(e.what()).find("cudaError"), std::string::npos) << e.what();
  }
  (void)cudaGetLastError();
}

TEST(CheckMacros, CudnnNamesTheCall) {
  int line = 0;
  try {
    line = __LINE__ + 1;
    CUDNN_CHECK(cudnnCreate(nullptr));  // a null handle pointer: CUDNN_STATUS_BAD_PARAM
    FAIL() << "cudnnCreate(nullptr) succeeded";
  } catch (const lighthouse::Error& e) {
    expect_message(e.what(), "cudnnCreate", line);
    EXPECT_NE(std::string(e.what()).find("CUDNN_STATUS"), std::string::npos) << e.what();
  }
}

cublasStatus_t cublasPretendCall() {
  return CUBLAS_STATUS_NOT_INITIALIZED;
}

TEST(CheckMacros, CublasNamesTheCall) {
  int line = 0;
  try {
    line = __LINE__ + 1;
    CUBLAS_CHECK(cublasPretendCall());
    FAIL() << "a failing status passed";
  } catch (const lighthouse::Error& e) {
    expect_message(e.what(), "cublasPretendCall", line);
    EXPECT_NE(std::string(e.what()).find("CUBLAS_STATUS_NOT_INITIALIZED"), std::string::npos)
        << e.what();
  }
}

__global__ void empty_kernel() {}

TEST(CheckMacros, LaunchNamesTheKernel) {
  int line = 0;
  try {
    // 4096 threads per block exceed every GPU's limit (1024); without a GPU the launch fails too.
    empty_kernel<<<1, 4096>>>();
    line = __LINE__ + 1;
    CUDA_CHECK_LAUNCH("empty_kernel");
    FAIL() << "an impossible launch passed";
  } catch (const lighthouse::Error& e) {
    expect_message(e.what(), "launch of empty_kernel", line);
  }
}

TEST(CheckMacros, SuccessPassesSilently) {
  EXPECT_NO_THROW(CUDA_CHECK(cudaError_t{cudaSuccess}));
  EXPECT_NO_THROW(CUDNN_CHECK(CUDNN_STATUS_SUCCESS));
  EXPECT_NO_THROW(CUBLAS_CHECK(CUBLAS_STATUS_SUCCESS));
}

}  // namespace
