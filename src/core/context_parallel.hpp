// forward() and backward() with Options::comm (attention.cpp hands them over): the orchestration
// of context parallelism over the rank-local stages and the communicator.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "core/backend.hpp"
#include "lighthouse/context_parallel.hpp"

namespace lighthouse {

// What a context-parallel forward keeps; Context::plan() is then the whole sequence's plan.
class CpState;

// Validates (every rule of the single-device call, on the whole sequence, and those of
// make_shard_plan), checks that all ranks agree, runs the forward; `plan` receives the whole
// sequence's plan. `local_checks` are the core's checks of this rank's tensors and options
// (attention.cpp): they run before the ranks compare their calls, and a rank's rejection stops
// every rank (the others throw RankFailed) instead of leaving them waiting in a collective.
std::shared_ptr<ContextState> cp_forward(const Config& config, const TensorView& q,
                                         const TensorView& k, const TensorView& v,
                                         const TensorView& out, const Options& options,
                                         const std::function<void()>& local_checks, Plan& plan);

// Null when `state` is not a context-parallel one.
const CpState* as_cp_state(const ContextState& state);

void cp_backward(const CpState& state, const TensorView& dout, const TensorView& dq,
                 const TensorView& dk, const TensorView& dv, const Options& options,
                 const std::function<void()>& local_checks);

// Elements of Context::indices() of a context-parallel forward: [B, H, S / W].
std::size_t cp_index_count(const CpState& state);
// The forward's number of ranks.
int cp_world(const CpState& state);

}  // namespace lighthouse
