// The one place that knows which backends exist. Adding a backend: implement
// lighthouse::Backend in src/<name>/, declare its factory here, add one case below.
#include <memory>
#include <mutex>

#include "core/backend.hpp"
#include "cpu/backend.hpp"
#include "lighthouse/error.hpp"
#ifdef LIGHTHOUSE_WITH_CUDA
#include "cuda/backend.hpp"
#endif

namespace lighthouse {

namespace {

Backend* make_or_null(Device device) {
  switch (device) {
    case Device::kCPU: {
      static std::unique_ptr<Backend> cpu = cpu::make_backend();
      return cpu.get();
    }
    case Device::kCUDA: {
#ifdef LIGHTHOUSE_WITH_CUDA
      static std::unique_ptr<Backend> gpu = cuda::make_backend();  // null when no GPU
      return gpu.get();
#else
      return nullptr;
#endif
    }
  }
  return nullptr;
}

}  // namespace

bool backend_available(Device device) {
  return make_or_null(device) != nullptr;
}

Backend& backend_for(Device device) {
  Backend* backend = make_or_null(device);
  if (!backend) {
#ifdef LIGHTHOUSE_WITH_CUDA
    throw Error(std::string("device ") + device_name(device) +
                ": no usable device was found (the CUDA backend is built, but no GPU answered)");
#else
    throw Error(std::string("device ") + device_name(device) +
                ": this build has no such backend (configure with -DLIGHTHOUSE_CUDA=ON)");
#endif
  }
  return *backend;
}

}  // namespace lighthouse
