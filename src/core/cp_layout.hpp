// Where a rank's buffers of context parallelism lie (context_parallel.hpp): the selection of its
// two chunks, its gathered rows and edges, and where in an all-gather the neighbour chunks' edges
// are. Shared by the rank-local stages (cp_stages.cpp) and the orchestration
// (context_parallel.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "lighthouse/context_parallel.hpp"

namespace lighthouse::cp {

// Both chunks' indices [B*H][S / 2W] and position maps [B*H][P of a chunk], int32, each part
// 256-byte aligned.
struct SelectionLayout {
  std::size_t indices[2] = {};
  std::size_t position[2] = {};
  std::size_t bytes = 0;
};
SelectionLayout selection_layout(const ShardPlan& plan);

// Bytes of one chunk's gathered rows of one tensor ([B*H][S / 2W][D]).
std::size_t chunk_rows_bytes(const ShardPlan& plan, DType dtype);
// Bytes of one chunk's output edges ([B*H][L-1][D]) and dout edges ([B][c_{L-1}-1][H][D]).
std::size_t output_edge_bytes(const ShardPlan& plan, DType dtype);
std::size_t dout_edge_bytes(const ShardPlan& plan, DType dtype);

// The slot (2 * owner + which) of global chunk g in an all-gather of [W, 2, ...] edges.
inline std::int64_t edge_slot(int world, std::int64_t g) {
  return g < world ? 2 * g : 2 * (2 * static_cast<std::int64_t>(world) - 1 - g) + 1;
}

// The [B, N / 2W, H, D] view of chunk `which` (0 or 1) of a rank's [B, N / W, H, D] view.
TensorView chunk_view(const TensorView& local, std::int64_t chunk_seq, int which);

}  // namespace lighthouse::cp
