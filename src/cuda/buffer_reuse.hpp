// Which of the caller's buffers the CUDA backend may borrow as scratch before it writes their
// final values, so that its own workspace stays small (peak device memory, docs/PERF.md).
//
// A buffer qualifies only when it is a contiguous [B, N, H, D] tensor (its bytes are exactly
// [data, data + nbytes)) and shares no byte with any tensor the call reads or with the context:
// a careless caller may pass, say, dout and dq as views of one buffer, and then the scratch
// written into dq would corrupt dout before it is read. Everything here is host arithmetic on
// addresses; nothing touches the device.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lighthouse/tensor.hpp"

namespace lighthouse::cuda {

// The bytes [lo, hi) that the elements of a view may occupy (every stride sign handled).
struct ByteSpan {
  std::uintptr_t lo = 0, hi = 0;
  bool empty() const { return hi <= lo; }
  bool overlaps(const ByteSpan& other) const {
    return !empty() && !other.empty() && lo < other.hi && other.lo < hi;
  }
};
ByteSpan span_of(const TensorView& t);
ByteSpan span_of(const void* data, std::size_t bytes);

// Where the backward keeps the gathered gradients, [BH, S, D] blocks of `block` bytes each:
// do_sel (the attention backward's input) and dq_sel, dk_sel, dv_sel (its outputs).
enum class GradientScratch {
  // All four in the workspace (4 blocks); one gather-backward launch for dq, dk and dv.
  kWorkspace,
  // Each gradient holds one block: dq <- do_sel, dk <- dq_sel, dv <- dv_sel; dk_sel in the
  // workspace (1 block).
  kOneBlock,
  // Each gradient holds one block and dk a second one: dq <- do_sel, dk <- [dq_sel, dv_sel],
  // dv <- dk_sel; nothing in the workspace while the attention runs.
  kTwoBlocks,
};
const char* gradient_scratch_name(GradientScratch scratch);

// kTwoBlocks when dq, dk and dv are contiguous, pairwise disjoint, disjoint from dout and from
// `context`, and hold 2 blocks; kOneBlock when they hold only 1; else kWorkspace.
GradientScratch choose_gradient_scratch(const TensorView& dout, const TensorView& dq,
                                        const TensorView& dk, const TensorView& dv,
                                        const ByteSpan& context, std::size_t block);

// Whether the forward may keep `bytes` of scratch (scores and coarsest means) in `out` until the
// scatter writes it: out contiguous, large enough, and disjoint from q, k, v and `context`.
bool out_holds_scratch(const TensorView& q, const TensorView& k, const TensorView& v,
                       const TensorView& out, const ByteSpan& context, std::size_t bytes);

}  // namespace lighthouse::cuda
