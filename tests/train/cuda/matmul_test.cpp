// cuBLASLt products (train/cuda/matmul.hpp) against a float64 loop: every transpose combination,
// bf16 -> bf16, bf16 -> fp32 and fp32 -> fp32, beta 0 and 1 (in place and out of place), padded
// leading dimensions and operands that are only 16-byte aligned. The fp32 case holds the products
// to 1e-5, which TF32 (10-bit mantissas) would miss by two orders of magnitude.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cuda/check.hpp"
#include "gpu_test_support.hpp"
#include "support/require_gpu.hpp"
#include "train/cuda/matmul.hpp"

namespace lhtest::gpu {
namespace {

namespace tc = lighthouse::train::cuda;
using lighthouse::testing::GpuTest;
using lighthouse::train::Trans;

struct Case {
  DType in, out;
};

class TrainCudaMatmul : public GpuTest, public ::testing::WithParamInterface<Case> {};

std::string name(const ::testing::TestParamInfo<Case>& info) {
  return std::string(lighthouse::dtype_name(info.param.in)) + "_to_" +
         lighthouse::dtype_name(info.param.out);
}

// Element (i, j) of op(X) for X stored row-major with leading dimension ld.
double at(const std::vector<double>& x, std::int64_t ld, Trans t, std::int64_t i, std::int64_t j) {
  return t == Trans::kNo ? x[i * ld + j] : x[j * ld + i];
}

TEST_P(TrainCudaMatmul, MatchesFloat64) {
  const auto [in, out] = GetParam();
  const std::int64_t m = 40, n = 24, k = 56, pad = 8;
  const std::size_t in_size = lighthouse::dtype_size(in), out_size = lighthouse::dtype_size(out);
  tc::Matmul mm(nullptr);
  for (const Trans ta : {Trans::kNo, Trans::kYes}) {
    for (const Trans tb : {Trans::kNo, Trans::kYes}) {
      for (const int mode : {0, 1, 2}) {  // beta 0; beta 1 in place; beta 1 onto another C
        // Stored shapes with padded rows; A starts `pad` elements in (16 bytes in bf16).
        const std::int64_t a_rows = ta == Trans::kNo ? m : k, a_cols = ta == Trans::kNo ? k : m;
        const std::int64_t b_rows = tb == Trans::kNo ? k : n, b_cols = tb == Trans::kNo ? n : k;
        const std::int64_t lda = a_cols + pad, ldb = b_cols + pad, ldd = n + pad;
        const auto a = rounded(in, random_values(pad + a_rows * lda, 21));
        const auto b = rounded(in, random_values(b_rows * ldb, 22));
        const auto c = rounded(out, random_values(m * ldd, 23));
        DeviceBuffer d_a = upload(a, in), d_b = upload(b, in), d_c = upload(c, out);
        DeviceBuffer d_d = mode == 1 ? upload(c, out) : poisoned(m * ldd * out_size);
        const float beta = mode == 0 ? 0.0f : 1.0f;
        const void* c_ptr = mode == 2 ? d_c.get() : (mode == 1 ? d_d.get() : nullptr);
        mm.run(ta, tb, m, n, k, {static_cast<char*>(d_a.get()) + pad * in_size, in, lda},
               {d_b.get(), in, ldb}, beta, c_ptr, d_d.get(), out, ldd);
        CUDA_CHECK(cudaDeviceSynchronize());
        const auto got_all = download(d_d, out, m * ldd);
        std::vector<double> got, want;
        const std::vector<double> a_view(a.begin() + pad, a.end());
        for (std::int64_t i = 0; i < m; ++i) {
          for (std::int64_t j = 0; j < n; ++j) {
            double s = beta == 0.0f ? 0.0 : c[i * ldd + j];
            for (std::int64_t p = 0; p < k; ++p)
              s += at(a_view, lda, ta, i, p) * at(b, ldb, tb, p, j);
            want.push_back(s);
            got.push_back(got_all[i * ldd + j]);
          }
        }
        const std::string what = std::string("ta=") + (ta == Trans::kYes ? "T" : "N") +
                                 " tb=" + (tb == Trans::kYes ? "T" : "N") + " mode " +
                                 std::to_string(mode);
        expect_close(got, want, out == DType::kBFloat16 ? 1e-2 : 1e-5, what);
      }
    }
  }
  // Each distinct shape is reported once, with its count.
  const auto shapes = mm.take_shapes();
  EXPECT_EQ(shapes.size(), 4u * 2u);  // 4 transpose pairs x (beta 0, beta 1)
  EXPECT_TRUE(mm.take_shapes().empty());
}

class TrainCudaMatmulErrors : public GpuTest {};

TEST_F(TrainCudaMatmulErrors, RejectsMixedInputs) {
  tc::Matmul mm(nullptr);
  DeviceBuffer buf(1024);
  EXPECT_THROW(
      mm.run(Trans::kNo, Trans::kNo, 4, 4, 4, {buf.get(), DType::kFloat32, 4},
             {buf.get(), DType::kBFloat16, 4}, 0.0f, nullptr, buf.get(), DType::kFloat32, 4),
      lighthouse::InvalidArgument);
  EXPECT_THROW(
      mm.run(Trans::kNo, Trans::kNo, 4, 4, 4, {buf.get(), DType::kFloat32, 4},
             {buf.get(), DType::kFloat32, 4}, 0.0f, nullptr, buf.get(), DType::kBFloat16, 4),
      lighthouse::InvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, TrainCudaMatmul,
                         ::testing::Values(Case{DType::kBFloat16, DType::kBFloat16},
                                           Case{DType::kBFloat16, DType::kFloat32},
                                           Case{DType::kFloat32, DType::kFloat32}),
                         name);

}  // namespace
}  // namespace lhtest::gpu
