// The op's configuration arguments as an autograd Function keeps them from its forward for its
// backward (ctx->saved_data): one copy of the field list for the dense and the packed-documents
// Functions (autograd.cpp, varlen.cpp).
#pragma once

#include <torch/autograd.h>

#include <cstdint>
#include <optional>
#include <string>

#include <c10/util/string_view.h>

namespace lighthouse::torch_op {

struct SavedConfig {
  std::int64_t levels, pool, topk;
  std::optional<double> scale;
  std::string selection, scorer;
  std::int64_t dilation;
  std::int64_t kv_heads;  // the forward's k.size(2): the backward allocates dk, dv with it
};

inline void save_config(torch::autograd::AutogradContext* ctx, std::int64_t levels,
                        std::int64_t pool, std::int64_t topk, std::optional<double> scale,
                        c10::string_view selection, c10::string_view scorer, std::int64_t dilation,
                        std::int64_t kv_heads) {
  auto& saved = ctx->saved_data;
  saved["levels"] = levels;
  saved["pool"] = pool;
  saved["topk"] = topk;
  saved["scale"] = scale;
  saved["selection"] = std::string(selection);
  saved["scorer"] = std::string(scorer);
  saved["dilation"] = dilation;
  saved["kv_heads"] = kv_heads;
}

inline SavedConfig load_config(const torch::autograd::AutogradContext* ctx) {
  const auto& saved = ctx->saved_data;
  return {saved.at("levels").toInt(),
          saved.at("pool").toInt(),
          saved.at("topk").toInt(),
          saved.at("scale").isNone() ? std::nullopt
                                     : std::optional<double>(saved.at("scale").toDouble()),
          saved.at("selection").toStringRef(),
          saved.at("scorer").toStringRef(),
          saved.at("dilation").toInt(),
          saved.at("kv_heads").toInt()};
}

}  // namespace lighthouse::torch_op
