// The plan as the stage kernels take it (stages.hpp).
#include <string>

#include "cuda/stages.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cuda {

Geometry make_geometry(const Plan& plan) {
  const int levels = plan.config.levels;
  if (levels < 1 || levels > kMaxLevels) {
    throw InvalidArgument("levels", std::to_string(levels),
                          "must be between 1 and " + std::to_string(kMaxLevels) + " on CUDA");
  }
  Geometry g;
  g.batch = plan.batch;
  g.seq = plan.seq;
  g.heads = plan.heads;
  g.group = plan.group();
  g.head_dim = plan.head_dim;
  g.levels = levels;
  g.pool = plan.config.pool;
  while ((1 << g.log2_pool) < g.pool) ++g.log2_pool;
  g.pyramid_size = plan.pyramid_size;
  g.causal = plan.config.selection == Selection::kCausal;
  g.stride = plan.config.selection == Selection::kStride;
  for (int l = 0; l < levels; ++l) {
    g.offset[l] = plan.offset[l];
    g.size[l] = plan.size[l];
  }
  if (levels == 1) {  // dense: one "tile" holding every token, nothing kept
    g.tiles = 1;
    g.tile_entries = plan.seq;
  } else {
    g.tiles = plan.tiles;
    g.tile_entries = plan.tile_entries;
  }
  g.S = plan.S;
  const std::int64_t per_tile =
      g.tile_entries + static_cast<std::int64_t>(levels - 1) * g.pool * kTileSize;
  if (g.tiles < 1 || g.S != g.tiles * per_tile || g.tiles * g.tile_entries != g.size[levels - 1]) {
    throw Error("CUDA backend: inconsistent plan (S = " + std::to_string(g.S) + ", tiles = " +
                std::to_string(g.tiles) + ", C = " + std::to_string(g.tile_entries) + ")");
  }
  return g;
}

Geometry kv_geometry(const Geometry& g) {
  Geometry kv = g;
  kv.heads = g.heads / g.group;
  kv.group = 1;
  return kv;
}

}  // namespace lighthouse::cuda
