// The pyramid's scores as every backend computes them, so that selections agree bit for bit
// across backends.
//
// A token row's score is (float) sqrt(s), s = sum_d (double) x_d^2 added in a fixed tree: the row
// is cut into chunks of kScoreChunk consecutive elements (the last may be shorter), each chunk
// summed in d order from 0; the chunk sums, padded with zeros to a power-of-two count, are added
// pairwise, neighbours first: ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + ...). Products of float32
// (or bf16) values are exact in double. The CPU follows the tree literally (cpu/pyramid.cpp,
// token_score); the GPU gives a chunk to each lane and combines the lanes by a butterfly in that
// order (cuda/pyramid.cu). NaN maps to -inf so that rankings stay a strict order. A coarser
// level's score is the maximum of its block's token scores (order-free).
#pragma once

#include <cstdint>

namespace lighthouse {

inline constexpr std::int64_t kScoreChunk = 8;  // elements per leaf of the score's sum tree

}  // namespace lighthouse
