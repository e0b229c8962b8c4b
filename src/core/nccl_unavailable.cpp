// The NCCL communicator's entry points in a build without NCCL (communicator.hpp): they say so.
// src/cuda/nccl_communicator.cpp defines them where NCCL was found (LIGHTHOUSE_WITH_NCCL).
#ifndef LIGHTHOUSE_WITH_NCCL

#include "lighthouse/communicator.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse {

namespace {
[[noreturn]] void no_nccl() {
  throw Error(
      "this build has no NCCL communicator (build with CUDA and NCCL: "
      "-DLIGHTHOUSE_NCCL_ROOT=<folder "
      "with include/nccl.h and lib/libnccl.so*>, or the toolkit's NCCL)");
}
}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(void*, void*) {
  no_nccl();
}

std::unique_ptr<Communicator> make_nccl_communicator_from_env(const std::string&, double) {
  no_nccl();
}

std::unique_ptr<Communicator> split_nccl_communicator(Communicator&, int) {
  no_nccl();
}

bool nccl_available() {
  return false;
}

}  // namespace lighthouse

#endif  // LIGHTHOUSE_WITH_NCCL
