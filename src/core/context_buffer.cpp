// Contexts in caller memory (ContextBuffer): the one layout, shared by every backend so that its
// size is a function of (plan, dtype) alone, and the answer of a backend that has no support.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/backend.hpp"
#include "core/carver.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse {

std::size_t context_stats_size(DType dtype) {
  return dtype == DType::kFloat64 ? sizeof(double) : sizeof(float);
}

ContextLayout context_layout(const Plan& plan, DType dtype) {
  // Query rows per query head; the selection and the k and v rows once per KV group.
  const auto rows = static_cast<std::size_t>(plan.batch * plan.heads * plan.S);
  const auto kv_rows = static_cast<std::size_t>(plan.batch * plan.kv_heads * plan.S);
  const auto pyramid = static_cast<std::size_t>(plan.batch * plan.kv_heads * plan.pyramid_size);
  const std::size_t row_bytes = static_cast<std::size_t>(plan.head_dim) * dtype_size(dtype);
  ContextLayout layout;
  Carver carve;
  layout.indices = carve.take(kv_rows * sizeof(std::int32_t));
  layout.position = carve.take(pyramid * sizeof(std::int32_t));
  layout.stats = carve.take(rows * context_stats_size(dtype));
  layout.q = carve.take(rows * row_bytes);
  layout.k = carve.take(kv_rows * row_bytes);
  layout.v = carve.take(kv_rows * row_bytes);
  layout.o = carve.take(rows * row_bytes);
  layout.bytes = carve.size();
  return layout;
}

std::size_t context_bytes(const Plan& plan, DType dtype) {
  return context_layout(plan, dtype).bytes;
}

std::size_t context_indices_offset(const Plan& plan, DType dtype) {
  return context_layout(plan, dtype).indices;
}

void Backend::forward(const Plan&, const TensorView&, const TensorView&, const TensorView&,
                      const TensorView&, void*, const Options&) {
  throw Error(std::string("the ") + device_name(device()) +
              " backend does not support context buffers (use lighthouse::Context)");
}

void Backend::backward(const Plan&, const void*, const TensorView&, const TensorView&,
                       const TensorView&, const TensorView&, const Options&) {
  throw Error(std::string("the ") + device_name(device()) +
              " backend does not support context buffers (use lighthouse::Context)");
}

}  // namespace lighthouse
