// The rules and arithmetic of context parallelism (context_parallel.hpp): which shardings are
// valid, what one chunk's plan is, how many bytes a call moves, and the host copies between a
// whole tensor and a rank's shard.
#include <cstdint>
#include <cstring>
#include <string>

#include "lighthouse/context_parallel.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse {

namespace {

std::string s(std::int64_t v) {
  return std::to_string(v);
}

// make_plan for the whole sequence, with "seq" errors saying how N came about.
Plan whole_plan(const Config& config, std::int64_t batch, std::int64_t seq, std::int64_t heads,
                std::int64_t head_dim, int world) {
  try {
    Plan plan = make_plan(config, batch, seq, heads, head_dim);
    if (plan.needs_padding()) {
      throw InvalidArgument("seq", s(seq),
                            "with context parallelism it must satisfy every shape rule (divisible "
                            "by pool^(levels-1) x topk/128, at least pool^(levels-1) x topk; the "
                            "next such length is " +
                                s(plan.padded_seq) +
                                "): padding under context parallelism is not supported yet");
    }
    return plan;
  } catch (const InvalidArgument& e) {
    if (e.param() != "seq" || world == 1) throw;
    throw InvalidArgument(e.param(),
                          e.value() + " (the whole sequence: cp = " + s(world) + " ranks x " +
                              s(seq / world) + " tokens)",
                          e.rule());
  }
}

}  // namespace

ShardPlan make_shard_plan(const Config& config, std::int64_t batch, std::int64_t seq,
                          std::int64_t heads, std::int64_t head_dim, int world) {
  if (world < 1) throw InvalidArgument("cp", s(world), "must be >= 1 (ranks of the sequence)");
  ShardPlan sp;
  sp.world = world;
  sp.plan = whole_plan(config, batch, seq, heads, head_dim, world);
  if (heads % world != 0) {
    throw InvalidArgument("cp", s(world),
                          "must divide the number of heads H = " + s(heads) +
                              ": each rank runs the attention over the whole gathered sequence "
                              "for H / cp heads (an all-gather fallback for other head counts "
                              "is not implemented)");
  }
  const std::int64_t chunks = 2 * static_cast<std::int64_t>(world);
  if (seq % chunks != 0) {
    throw InvalidArgument("seq", s(seq),
                          "with cp = " + s(world) + " the sequence is cut into 2 x cp = " +
                              s(chunks) + " equal chunks: it must be divisible by " + s(chunks));
  }
  if (!sp.plan.dense() && sp.plan.tiles % chunks != 0) {
    throw InvalidArgument(
        "cp", s(world),
        "each of the 2 x cp = " + s(chunks) + " chunks must hold whole tiles: topk / 128 = " +
            s(sp.plan.tiles) + " tiles must be divisible by " + s(chunks) +
            " (a chunk is then seq / " + s(chunks) + " tokens, a multiple of " + "a tile's " +
            s(sp.plan.tile_entries * sp.plan.block.back()) + " tokens)");
  }
  if (config.selection != Selection::kOriginal) {
    throw InvalidArgument("selection", selection_name(config.selection),
                          "context parallelism supports selection = original only so far (the "
                          "causal rule also reads the pooled scores of the block before each "
                          "chunk's first, which no rank exchanges yet)");
  }
  if (config.scorer != Scorer::kNorm) {
    throw InvalidArgument("scorer", scorer_name(config.scorer),
                          "context parallelism supports scorer = norm only so far (the dilated "
                          "scorer attends over the whole past of each token: its scores would "
                          "need an exchange of q and k between the ranks)");
  }
  Config chunk_config = config;
  chunk_config.topk = sp.plan.dense() ? config.topk : config.topk / static_cast<int>(chunks);
  chunk_config.scale = sp.plan.scale;
  sp.chunk = make_plan(chunk_config, batch, seq / chunks, heads, head_dim);
  if (sp.chunk.needs_padding()) {
    throw InvalidArgument("seq", s(seq),
                          "with cp = " + s(world) + " each of the 2 x cp chunks (" +
                              s(seq / chunks) + " tokens, topk " + s(chunk_config.topk) +
                              ") must satisfy every shape rule on its own; padding under "
                              "context parallelism is not supported yet");
  }
  sp.local_seq = seq / world;
  sp.chunk_seq = seq / chunks;
  sp.chunk_rows = sp.chunk.S;
  sp.heads_per_rank = heads / world;
  sp.edge_tokens = sp.plan.block.back() - 1;
  sp.edge_levels = config.levels - 1;
  return sp;
}

// Bytes leaving a rank: (W - 1) blocks of every all-to-all and all-gather (the rank's own block
// stays), the block being what the rank sends to one other rank (all-to-all) or contributes
// (all-gather).
CpTraffic ShardPlan::forward_traffic(DType dtype) const {
  const std::int64_t e = static_cast<std::int64_t>(dtype_size(dtype));
  const std::int64_t others = world - 1;
  const std::int64_t B = plan.batch, H = plan.heads, D = plan.head_dim;
  const std::int64_t block = 2 * B * heads_per_rank * chunk_rows * D * e;  // per tensor, peer
  CpTraffic t;
  t.all_to_all = others * 4 * block;  // q, k, v to the heads, out back
  t.edges = edge_levels > 0 ? others * 2 * B * H * edge_levels * D * e : 0;
  t.check = others * static_cast<std::int64_t>(kCpCheckBytes);
  return t;
}

CpTraffic ShardPlan::backward_traffic(DType dtype) const {
  const std::int64_t e = static_cast<std::int64_t>(dtype_size(dtype));
  const std::int64_t others = world - 1;
  const std::int64_t B = plan.batch, H = plan.heads, D = plan.head_dim;
  const std::int64_t block = 2 * B * heads_per_rank * chunk_rows * D * e;
  CpTraffic t;
  t.all_to_all = others * 4 * block;  // dout to the heads, dq, dk, dv back
  t.edges = edge_tokens > 0 ? others * 2 * B * edge_tokens * H * D * e : 0;
  t.check = others * static_cast<std::int64_t>(kCpCheckBytes);
  return t;
}

CpTraffic ShardPlan::ulysses_forward_traffic(DType dtype) const {
  const std::int64_t e = static_cast<std::int64_t>(dtype_size(dtype));
  CpTraffic t;
  t.all_to_all = (world - 1) * 4 * 2 * plan.batch * heads_per_rank * chunk_seq * plan.head_dim * e;
  return t;
}

CpTraffic ShardPlan::ulysses_backward_traffic(DType dtype) const {
  return ulysses_forward_traffic(dtype);  // dout in; dq, dk, dv out
}

namespace {

// Copies chunk `which` of a rank between a whole [B, N, H, D] tensor and its shard.
template <typename T>
void copy_chunks(const TensorView& whole, int world, int rank, const TensorView& local,
                 bool to_local) {
  const std::int64_t B = whole.shape[0], N = whole.shape[1], H = whole.shape[2];
  const std::int64_t D = whole.shape[3], n = N / (2 * world);
  for (int which = 0; which < 2; ++which) {
    const std::int64_t g = cp_chunk(world, rank, which);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t t = 0; t < n; ++t)
        for (std::int64_t h = 0; h < H; ++h) {
          T* w = static_cast<T*>(whole.data) + b * whole.strides[0] +
                 (g * n + t) * whole.strides[1] + h * whole.strides[2];
          T* l = static_cast<T*>(local.data) + b * local.strides[0] +
                 (which * n + t) * local.strides[1] + h * local.strides[2];
          if (to_local) {
            std::memcpy(l, w, static_cast<std::size_t>(D) * sizeof(T));
          } else {
            std::memcpy(w, l, static_cast<std::size_t>(D) * sizeof(T));
          }
        }
  }
}

void check_shard_views(const TensorView& whole, int world, int rank, const TensorView& local) {
  if (world < 1) throw InvalidArgument("cp", s(world), "must be >= 1");
  if (rank < 0 || rank >= world) {
    throw InvalidArgument("rank", s(rank), "must be in [0, cp = " + s(world) + ")");
  }
  for (const auto* t : {&whole, &local}) {
    const char* name = t == &whole ? "whole" : "local";
    if (t->rank != 4 || t->strides[3] != 1) {
      throw InvalidArgument(name, t->shape_string(),
                            "must be a [B, N, H, D] tensor with a contiguous D");
    }
    if (t->device != Device::kCPU) {
      throw InvalidArgument(std::string(name) + ".device", device_name(t->device),
                            "shard() and unshard() copy host tensors");
    }
    if (t->dtype != DType::kFloat32 && t->dtype != DType::kFloat64) {
      throw InvalidArgument(std::string(name) + ".dtype", dtype_name(t->dtype),
                            "shard() and unshard() copy float32 or float64");
    }
  }
  const std::int64_t N = whole.shape[1];
  if (N % (2 * world) != 0) {
    throw InvalidArgument("whole", whole.shape_string(),
                          "its N must be divisible by 2 x cp = " + s(2 * world));
  }
  auto expected = whole.shape;
  expected[1] = N / world;
  if (local.shape != expected || local.dtype != whole.dtype) {
    throw InvalidArgument("local", local.shape_string(),
                          "must be [B, N / cp, H, D] = [" + s(expected[0]) + ", " + s(expected[1]) +
                              ", " + s(expected[2]) + ", " + s(expected[3]) +
                              "] of the whole tensor's dtype");
  }
}

}  // namespace

void unshard_indices(const ShardPlan& plan, int rank, const std::vector<std::int32_t>& local,
                     std::int32_t* whole) {
  const std::int64_t BH = plan.plan.batch * plan.plan.heads, S = plan.plan.S;
  const std::int64_t rows = plan.chunk_rows;
  if (static_cast<std::int64_t>(local.size()) != BH * 2 * rows) {
    throw InvalidArgument("local", std::to_string(local.size()) + " indices",
                          "must be a rank's [B, H, 2, S / 2W] = " + s(BH * 2 * rows));
  }
  if (rank < 0 || rank >= plan.world) {
    throw InvalidArgument("rank", s(rank), "must be in [0, cp = " + s(plan.world) + ")");
  }
  for (std::int64_t bh = 0; bh < BH; ++bh) {
    for (int c = 0; c < 2; ++c) {
      const std::int64_t g = cp_chunk(plan.world, rank, c);
      std::memcpy(whole + bh * S + g * rows, local.data() + (bh * 2 + c) * rows,
                  static_cast<std::size_t>(rows) * sizeof(std::int32_t));
    }
  }
}

void shard(const TensorView& whole, int world, int rank, const TensorView& local) {
  check_shard_views(whole, world, rank, local);
  if (whole.dtype == DType::kFloat32) {
    copy_chunks<float>(whole, world, rank, local, true);
  } else {
    copy_chunks<double>(whole, world, rank, local, true);
  }
}

void unshard(const TensorView& local, int world, int rank, const TensorView& whole) {
  check_shard_views(whole, world, rank, local);
  if (whole.dtype == DType::kFloat32) {
    copy_chunks<float>(whole, world, rank, local, false);
  } else {
    copy_chunks<double>(whole, world, rank, local, false);
  }
}

}  // namespace lighthouse
