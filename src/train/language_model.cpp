#include "train/language_model.hpp"

#include "lighthouse/communicator.hpp"

namespace lighthouse::train {

std::int64_t ParamInfo::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

std::int64_t LanguageModel::parameter_count() const {
  std::int64_t n = 0;
  for (const ParamInfo& p : params()) n += p.numel();
  return n;
}

void LanguageModel::set_context_parallel(Communicator* comm) {
  if (comm != nullptr) {
    throw Error("this model has no context parallelism (--cp): only the CPU and CUDA models do");
  }
}

void LanguageModel::set_data_parallel(Communicator* world) {
  if (world != nullptr) {
    throw Error(
        "this model has no data parallelism (--cp with more processes than W): only the "
        "CPU and CUDA models do");
  }
}

}  // namespace lighthouse::train
