// What the CUDA backend refuses, naming the parameter: non-finite inputs under
// Options::check_finite, and configurations its kernels cannot run.
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "support/library_runs.hpp"
#include "support/require_gpu.hpp"

namespace lighthouse::testing {
namespace {

namespace lh = lighthouse;

// Options::check_finite on device tensors: a NaN or Inf in q, k, v (forward) or dout (backward)
// is refused with InvalidArgument naming the tensor and counting the values; finite inputs give
// the bits of an unchecked run.
TEST(CudaBackend, CheckFiniteOnDeviceTensors) {
  LIGHTHOUSE_REQUIRE_GPU();
  const Case c{{1, 4096, 2, 64}, 2, 4, 128};
  const Inputs in = random_inputs(c.shape, 79);
  const Outputs plain = run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c));
  const Outputs checked =
      run(in, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c), {.check_finite = true});
  EXPECT_EQ(checked.indices, plain.indices);
  EXPECT_TRUE(bits_equal(checked.out, plain.out));
  EXPECT_TRUE(bits_equal(checked.dq, plain.dq));
  const auto expect_refused = [&](Inputs bad, const std::string& tensor) {
    try {
      run(bad, lh::Device::kCUDA, lh::DType::kBFloat16, config_of(c), {.check_finite = true});
      ADD_FAILURE() << "a non-finite " << tensor << " was accepted";
    } catch (const lh::InvalidArgument& e) {
      EXPECT_EQ(e.param(), tensor);
      EXPECT_NE(std::string(e.what()).find("2 NaN/Inf values"), std::string::npos) << e.what();
    }
  };
  const std::size_t late = in.q.size() - 5;  // near the end: the whole tensor is read
  for (const char* name : {"q", "k", "v", "dout"}) {
    Inputs bad = in;
    std::vector<float>& x = name[0] == 'q'   ? bad.q
                            : name[0] == 'k' ? bad.k
                            : name[0] == 'v' ? bad.v
                                             : bad.dout;
    x[7] = std::numeric_limits<float>::quiet_NaN();
    x[late] = -std::numeric_limits<float>::infinity();
    expect_refused(bad, name);
  }
}

// What the kernels cannot run is refused up front, naming the parameter.
TEST(CudaBackend, RejectsUnsupported) {
  LIGHTHOUSE_REQUIRE_GPU();
  const lh::Device gpu = lh::Device::kCUDA;
  lh::Config cfg;
  cfg.levels = 3;
  cfg.pool = 4;
  cfg.topk = 128;
  const lh::Plan plan = lh::make_plan(cfg, 1, 8192, 2, 136);
  try {
    lh::check_supported(gpu, plan, lh::DType::kBFloat16);
    ADD_FAILURE() << "head_dim 136 in bf16 accepted";
  } catch (const lh::InvalidArgument& e) {
    EXPECT_EQ(e.param(), "head_dim");
  }
  const lh::Plan plan64 = lh::make_plan(cfg, 1, 8192, 2, 64);
  EXPECT_NO_THROW(lh::check_supported(gpu, plan64, lh::DType::kBFloat16));
  EXPECT_NO_THROW(lh::check_supported(gpu, plan64, lh::DType::kFloat32));
  try {
    lh::check_supported(gpu, plan64, lh::DType::kFloat64);
    ADD_FAILURE() << "float64 accepted";
  } catch (const lh::InvalidArgument& e) {
    EXPECT_EQ(e.param(), "dtype");
  }
  lh::Config wide;
  wide.levels = 2;
  wide.pool = 128;
  wide.topk = 128;
  try {
    lh::check_supported(gpu, lh::make_plan(wide, 1, 16384, 1, 64), lh::DType::kBFloat16);
    ADD_FAILURE() << "pool 128 accepted";
  } catch (const lh::InvalidArgument& e) {
    EXPECT_EQ(e.param(), "pool");
  }
}

}  // namespace
}  // namespace lighthouse::testing
