// What a user may ask of a device besides running attention on it: whether this build and
// machine have it, whether its kernels can run a configuration, moving bytes between it and the
// host, and measuring work on it (what `lighthouse bench` needs). Every function but
// backend_available() throws lighthouse::Error when the device is not available.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "lighthouse/plan.hpp"
#include "lighthouse/tensor.hpp"

namespace lighthouse {

// Whether this build has the device's backend and the machine has the device.
bool backend_available(Device device);
// Throws lighthouse::Error saying why when it has not (not compiled in, or no device answered).
void check_available(Device device);

// Throws InvalidArgument when the device's kernels cannot run `plan` with `dtype` (CUDA: the head
// dims and dtypes cuDNN and the reference kernels take, at most 32 levels, ...). forward() checks
// the same; this asks ahead of time.
void check_supported(Device device, const Plan& plan, DType dtype);

// Copies between host memory and the device's (plain memcpy on the CPU).
void copy_to_host(Device device, void* host_dst, const void* src, std::size_t bytes);
void copy_from_host(Device device, void* dst, const void* host_src, std::size_t bytes);

// Waits for all work queued on the device (a no-op on the CPU).
void synchronize(Device device);

// Milliseconds `work` takes on the device, measured from an idle device: CUDA events around the
// work queued on the default stream (the stream a null Options::stream means), wall-clock time
// on the CPU.
double time_ms(Device device, const std::function<void()>& work);

// Device memory this process holds on the device (CUDA: total - free, so it includes caching
// pools and workspaces), or -1 where that is not meaningful (the CPU).
std::int64_t memory_in_use(Device device);

// Returns cached scratch memory (pools, workspaces) to the device, so that memory_in_use()
// differences measure one workload's peak.
void release_cached_memory(Device device);

}  // namespace lighthouse
