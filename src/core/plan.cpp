#include "lighthouse/plan.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>

#include "lighthouse/error.hpp"

namespace lighthouse {

namespace {

void require_positive(const char* param, std::int64_t value) {
  if (value < 1) throw InvalidArgument(param, std::to_string(value), "must be >= 1");
}

std::string s(std::int64_t v) {
  return std::to_string(v);
}

}  // namespace

Plan make_plan(const Config& config, std::int64_t batch, std::int64_t seq, std::int64_t heads,
               std::int64_t head_dim, std::int64_t kv_heads) {
  validate(config);
  require_positive("batch", batch);
  require_positive("seq", seq);
  require_positive("heads", heads);
  require_positive("head_dim", head_dim);
  if (kv_heads == 0) kv_heads = heads;
  require_positive("kv_heads", kv_heads);
  if (heads % kv_heads != 0) {
    throw InvalidArgument(
        "kv_heads", s(kv_heads),
        "must divide heads = " + s(heads) + " (each KV head serves heads / kv_heads query heads)");
  }
  if (kv_heads != heads && config.scorer == Scorer::kDilated && config.levels > 1) {
    throw InvalidArgument("scorer", "dilated",
                          "needs kv_heads == heads (" + s(kv_heads) + " != " + s(heads) +
                              "): the dilated scorer with grouped-query attention is not "
                              "supported yet");
  }

  Plan plan;
  plan.config = config;
  plan.batch = batch;
  plan.seq = seq;
  plan.heads = heads;
  plan.head_dim = head_dim;
  plan.kv_heads = kv_heads;
  plan.scale = config.scale ? *config.scale : 1.0 / std::sqrt(static_cast<double>(head_dim));

  const int L = config.levels;
  if (L == 1) {
    plan.block = {1};
    plan.size = {seq};
    plan.offset = {0};
    plan.pyramid_size = seq;
    plan.tiles = 1;
    plan.tile_entries = seq;
    plan.S = seq;
  } else {
    // Coarsest block size p^(L-1); it must divide N (and so cannot exceed it).
    std::int64_t coarsest = 1;
    for (int l = 1; l < L; ++l) {
      if (coarsest > seq / config.pool) {
        throw InvalidArgument("seq", s(seq),
                              "must be divisible by pool^(levels-1) = " + s(config.pool) + "^" +
                                  s(L - 1) + ", which exceeds it");
      }
      coarsest *= config.pool;
    }
    if (seq % coarsest != 0) {
      throw InvalidArgument("seq", s(seq), "must be divisible by pool^(levels-1) = " + s(coarsest));
    }
    std::int64_t block = 1, offset = 0;
    for (int l = 0; l < L; ++l) {
      plan.block.push_back(block);
      plan.size.push_back(seq / block);
      plan.offset.push_back(offset);
      offset += seq / block;
      block *= config.pool;
    }
    plan.pyramid_size = offset;
    const std::int64_t coarse_entries = plan.size.back();
    plan.tiles = config.topk / kTileSize;
    if (coarse_entries % plan.tiles != 0) {
      throw InvalidArgument(
          "topk", s(config.topk),
          "the coarsest level's " + s(coarse_entries) +
              " entries (seq / pool^(levels-1)) must split evenly into topk/128 = " +
              s(plan.tiles) + " tiles");
    }
    plan.tile_entries = coarse_entries / plan.tiles;
    if (plan.tile_entries < kTileSize) {
      throw InvalidArgument("topk", s(config.topk),
                            "each of the topk/128 = " + s(plan.tiles) + " tiles would hold " +
                                s(plan.tile_entries) +
                                " coarsest entries, fewer than 128; use a smaller topk, fewer "
                                "levels or a longer seq");
    }
    plan.S = coarse_entries + static_cast<std::int64_t>(L - 1) * config.pool * config.topk;
    // The dilated scorer splits the tokens into `dilation` subsequences of equal length.
    if (config.scorer == Scorer::kDilated && seq % config.dilation != 0) {
      throw InvalidArgument("dilation", s(config.dilation),
                            "must divide seq = " + s(seq) +
                                " (the dilated scorer splits the tokens into dilation "
                                "interleaved subsequences of equal length)");
    }
  }
  // Pyramid indices are stored as int32.
  if (plan.pyramid_size > std::numeric_limits<std::int32_t>::max()) {
    throw InvalidArgument("seq", s(seq), "the pyramid index must fit in int32 (seq < ~1e9)");
  }
  return plan;
}

double Plan::attention_fwd_flops() const {
  // Two S x S x D products, half of them masked by causality.
  return 2.0 * static_cast<double>(S) * static_cast<double>(S) * static_cast<double>(head_dim) *
         static_cast<double>(batch * heads);
}
double Plan::attention_bwd_flops() const {
  return 2.5 * attention_fwd_flops();
}
double Plan::dense_fwd_flops() const {
  return 2.0 * static_cast<double>(seq) * static_cast<double>(seq) * static_cast<double>(head_dim) *
         static_cast<double>(batch * heads);
}
double Plan::dense_bwd_flops() const {
  return 2.5 * dense_fwd_flops();
}

double Plan::scorer_flops() const {
  if (dense()) return 0;
  const double bh = static_cast<double>(batch * heads), n = static_cast<double>(seq),
               d = static_cast<double>(head_dim);
  if (config.scorer == Scorer::kDilated) return 4.0 * bh * n * n * d / config.dilation;
  return 4.0 * bh * n * d;
}

std::int64_t Plan::gathered_bytes(std::size_t element_size) const {
  const std::int64_t rows = batch * heads * S, kv_rows = batch * kv_heads * S;
  // q and o rows per query head, k and v rows per KV group, a float32 log-sum-exp per query row
  // and an int32 index per KV-group row.
  return (2 * rows + 2 * kv_rows) * head_dim * static_cast<std::int64_t>(element_size) + rows * 4 +
         kv_rows * 4;
}

std::string Plan::describe() const {
  std::ostringstream os;
  os << "levels " << config.levels << ", pool " << config.pool << ", topk " << config.topk
     << ", scale " << scale << ", selection " << selection_name(config.selection) << ", scorer "
     << scorer_name(config.scorer);
  if (config.scorer == Scorer::kDilated) os << " (dilation " << config.dilation << ")";
  os << "\n";
  os << "B " << batch << ", N " << seq << ", H " << heads;
  if (kv_heads != heads) os << " (" << kv_heads << " KV heads)";
  os << ", D " << head_dim << "\n";
  for (std::size_t l = 0; l < size.size(); ++l) {
    os << "  level " << l + 1 << ": block " << block[l] << ", entries " << size[l] << ", offset "
       << offset[l] << "\n";
  }
  os << "tiles " << tiles << " of " << tile_entries << " coarsest entries; S = " << S << "\n";
  return os.str();
}

}  // namespace lighthouse
