// Built without CUDA: the CUDA model is not available.
#include "lighthouse/error.hpp"
#include "train/language_model.hpp"

namespace lighthouse::train {

bool cuda_model_available() { return false; }

std::unique_ptr<LanguageModel> make_cuda_model(const ModelConfig&, std::uint64_t, const AdamWConfig&,
                                               const CudaModelOptions&) {
  throw Error("this lighthouse was built without CUDA: --device cuda is not available");
}

}  // namespace lighthouse::train
