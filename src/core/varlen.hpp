// Packed documents (docs/SPEC.md, "Packed documents"): q, k, v hold several documents one after
// another, delimited by FlashAttention-style int32 offsets (`cu_seqlens`), and each document is
// attended as its own sequence under the any-length rule. The core groups the documents that run
// on the same plan (the same padded length, or the same length for the dense exception), copies
// each group into one zero-padded [documents, N', H, D] scratch tensor, runs one backend call per
// group and copies the documents' rows back. Every backend gets it unchanged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/backend.hpp"

namespace lighthouse {

// Tokens [start, start + length) of batch row `row`.
struct Document {
  std::int64_t row = 0, start = 0, length = 0;
};

// Documents that run as the rows of one backend call.
struct DocumentGroup {
  Plan plan;  // what the backend runs: batch = documents.size(), seq = the run length
  std::vector<std::size_t> documents;  // indices into Packing::documents, in offset order
  std::size_t context_offset = 0;      // where its context lies in a context buffer
};

struct Packing {
  std::vector<Document> documents;
  std::vector<DocumentGroup> groups;  // in the order of their first document
  std::size_t context_bytes = 0;      // the groups' contexts one after another
};

// The offsets of `cu_seqlens` on the host (one device-to-host copy of docs + 1 int32 on CUDA),
// checked against every rule of the spec for q of shape [batch, seq, *, *] on `device`; a
// violation is an InvalidArgument naming cu_seqlens.
std::vector<std::int64_t> read_cu_seqlens(const TensorView& cu_seqlens, Device device,
                                          std::int64_t batch, std::int64_t seq);

// The documents and their groups. Throws what make_plan() throws for a document's length, and
// InvalidArgument from the backend if it cannot run a group's plan in `dtype`.
Packing make_packing(const Config& config, const std::vector<std::int64_t>& offsets,
                     std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                     std::int64_t kv_heads, Backend& backend, DType dtype);

// What a forward over packed documents keeps: the packing and one backend context per group.
class VarlenState;
// Null when `state` is not a packed-documents one.
const VarlenState* as_varlen_state(const ContextState& state);
// Elements of Context::indices(): each group's [documents, Hkv, S] one after another.
std::size_t varlen_index_count(const VarlenState& state);

// q, k, v, out are the whole [B, N, H, D] (k, v: Hkv heads) tensors.
std::shared_ptr<ContextState> varlen_forward(Backend& backend, const Packing& packing,
                                             const TensorView& q, const TensorView& k,
                                             const TensorView& v, const TensorView& out,
                                             const Options& options);
void varlen_backward(Backend& backend, const VarlenState& state, const TensorView& dout,
                     const TensorView& dq, const TensorView& dk, const TensorView& dv,
                     const Options& options);

// The same with the contexts in caller memory (`context`: packing.context_bytes bytes).
void varlen_forward(Backend& backend, const Packing& packing, const TensorView& q,
                    const TensorView& k, const TensorView& v, const TensorView& out, void* context,
                    const Options& options);
void varlen_backward(Backend& backend, const Packing& packing, const void* context,
                     const TensorView& dout, const TensorView& dq, const TensorView& dk,
                     const TensorView& dv, const Options& options);

}  // namespace lighthouse
