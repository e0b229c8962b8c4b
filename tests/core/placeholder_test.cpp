#include <gtest/gtest.h>

#include "lighthouse/tensor.hpp"

TEST(Tensor, DtypeSizes) { EXPECT_EQ(lighthouse::dtype_size(lighthouse::DType::kFloat32), 4u); }
