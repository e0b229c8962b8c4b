#include "train/flops.hpp"

#include "lighthouse/plan.hpp"

namespace lighthouse::train {

StepFlops& StepFlops::operator+=(const StepFlops& o) {
  matmul += o.matmul;
  attention += o.attention;
  attention_dense_equivalent += o.attention_dense_equivalent;
  return *this;
}

std::int64_t parameter_count(const ModelConfig& model) {
  const std::int64_t c = model.dim, f = model.ffn(), v = model.vocab;
  const std::int64_t per_layer = c + c * model.qkv_width() + c * c + c + c * 2 * f + f * c;
  return v * c + model.layers * per_layer + c + (model.tied ? 0 : c * v);
}

double matmul_forward_flops(const ModelConfig& model, std::int64_t rows) {
  const double r = static_cast<double>(rows), c = model.dim, f = model.ffn(), v = model.vocab;
  const double per_layer = 2 * r * c * (model.qkv_width() + c + 2 * f) + 2 * r * f * c;
  return model.layers * per_layer + 2 * r * c * v;
}

StepFlops training_flops(const ModelConfig& model, const std::vector<Config>& attention,
                         std::int64_t batch, std::int64_t seq) {
  StepFlops out;
  // Each product y = x W has two backward products (dx = dy W^T, dW = x^T dy) of its size.
  out.matmul = 3 * matmul_forward_flops(model, batch * seq);
  for (const Config& c : attention) {
    const Plan plan =
        make_plan(c, batch, seq, model.heads, model.head_dim(), model.kv_head_count());
    out.attention += plan.attention_fwd_flops() + plan.attention_bwd_flops();
    out.attention_dense_equivalent += plan.dense_fwd_flops() + plan.dense_bwd_flops();
  }
  return out;
}

}  // namespace lighthouse::train
