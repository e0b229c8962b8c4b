// The public device helpers (lighthouse/device.hpp): each asks the device's backend.
#include "lighthouse/device.hpp"

#include "core/backend.hpp"

namespace lighthouse {

void check_available(Device device) {
  backend_for(device);
}

void check_supported(Device device, const Plan& plan, DType dtype) {
  backend_for(device).check_supported(plan, dtype);
}

void copy_to_host(Device device, void* host_dst, const void* src, std::size_t bytes) {
  backend_for(device).copy_to_host(host_dst, src, bytes);
}

void copy_from_host(Device device, void* dst, const void* host_src, std::size_t bytes) {
  backend_for(device).copy_from_host(dst, host_src, bytes);
}

void synchronize(Device device) {
  backend_for(device).synchronize();
}

double time_ms(Device device, const std::function<void()>& work) {
  return backend_for(device).time_ms(work);
}

std::int64_t memory_in_use(Device device) {
  return backend_for(device).memory_in_use();
}

void release_cached_memory(Device device) {
  backend_for(device).release_cached_memory();
}

}  // namespace lighthouse
