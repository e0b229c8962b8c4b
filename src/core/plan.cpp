#include "lighthouse/plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
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

// Saturating arithmetic for the padded length: anything >= kHuge is "too long".
constexpr std::int64_t kHuge = std::int64_t{1} << 60;

std::int64_t sat_mul(std::int64_t a, std::int64_t b) {
  return a >= kHuge / b ? kHuge : a * b;
}

struct Padding {
  std::int64_t length = 0;  // the smallest valid length >= seq (kHuge: too long)
  std::int64_t S = 0;       // the gathered length at that length
};

// The smallest length >= seq that satisfies every rule tied to the length (levels > 1): a
// multiple of the coarsest block c = pool^(levels-1) times the tiles T = topk/128 (the coarsest
// level splits into whole tiles), at least c x topk (each tile holds >= 128 coarsest entries),
// and with the dilated scorer a multiple of the dilation.
Padding pad_length(const Config& config, std::int64_t seq) {
  const int L = config.levels;
  std::int64_t coarsest = 1;
  for (int l = 1; l < L; ++l) coarsest = sat_mul(coarsest, config.pool);
  const std::int64_t tiles = config.topk / kTileSize;
  std::int64_t step = sat_mul(coarsest, tiles);
  if (config.scorer == Scorer::kDilated && step < kHuge) {
    step = sat_mul(step / std::gcd(step, std::int64_t{config.dilation}), config.dilation);
  }
  const std::int64_t least = sat_mul(coarsest, config.topk);
  const std::int64_t x = std::max(seq, least);
  Padding padding;
  const std::int64_t extra =
      static_cast<std::int64_t>(L - 1) * config.pool * static_cast<std::int64_t>(config.topk);
  if (x >= kHuge || step >= kHuge) {
    padding.length = kHuge;
    // At least topk coarsest entries whatever the length.
    padding.S = config.topk + extra;
    return padding;
  }
  padding.length = (x + step - 1) / step * step;
  padding.S = padding.length / coarsest + extra;
  return padding;
}

// The pyramid's geometry at a valid length (pad_length's).
void fill_levels(Plan& plan, std::int64_t len) {
  const Config& config = plan.config;
  const int L = config.levels;
  std::int64_t block = 1, offset = 0;
  for (int l = 0; l < L; ++l) {
    plan.block.push_back(block);
    plan.size.push_back(len / block);
    plan.offset.push_back(offset);
    offset += len / block;
    block *= config.pool;
  }
  plan.pyramid_size = offset;
  const std::int64_t coarse_entries = plan.size.back();
  plan.tiles = config.topk / kTileSize;
  plan.tile_entries = coarse_entries / plan.tiles;
  plan.S = coarse_entries + static_cast<std::int64_t>(L - 1) * config.pool * config.topk;
  const bool valid = len % plan.block.back() == 0 && coarse_entries % plan.tiles == 0 &&
                     plan.tile_entries >= kTileSize &&
                     (config.scorer != Scorer::kDilated || len % config.dilation == 0);
  if (!valid) throw Error("make_plan: padded length " + s(len) + " breaks a rule (a bug)");
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
    plan.padded_seq = seq;
    return plan;
  }
  const Padding padding = pad_length(config, seq);
  if (padding.length != seq && padding.S >= seq) {
    // The padded length would gather at least as many entries as there are tokens: the spec's
    // exception, dense causal attention on the seq tokens.
    Config dense = config;
    dense.levels = 1;
    Plan fallback = make_plan(dense, batch, seq, heads, head_dim, kv_heads);
    fallback.padded_seq = padding.length;
    fallback.dense_fallback = true;
    fallback.padded_S = padding.S;
    return fallback;
  }
  if (padding.length >= kHuge) {
    throw InvalidArgument("seq", s(seq),
                          "padded to a whole number of coarsest tiles (pool^(levels-1) x topk/128 "
                          "tokens each, at least topk coarsest entries) it would overflow; use "
                          "fewer levels or a smaller pool");
  }
  plan.padded_seq = padding.length;
  fill_levels(plan, padding.length);
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

std::int64_t Plan::entries_in_S(std::size_t l) const {
  return l + 1 == size.size() ? size.back() : static_cast<std::int64_t>(config.pool) * config.topk;
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
  if (dense_fallback) {
    os << "seq " << seq << " padded to " << padded_seq << " would gather S = " << padded_S
       << " >= " << seq << " entries: dense causal attention on the " << seq << " tokens\n";
  } else if (runs_padded()) {
    os << "seq " << seq << " padded to " << padded_seq << " (zeros, cut off again)\n";
  }
  os << "tiles " << tiles << " of " << tile_entries << " coarsest entries; S = " << S << "\n";
  return os.str();
}

}  // namespace lighthouse
