#include "core/varlen.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "core/carver.hpp"
#include "core/padding.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse {

namespace {

std::string s(std::int64_t v) {
  return std::to_string(v);
}

std::string entry(std::size_t i, std::int64_t value) {
  return "cu_seqlens[" + std::to_string(i) + "] = " + s(value);
}

char* token_at(const TensorView& t, std::int64_t row, std::int64_t n) {
  const std::int64_t element = row * t.strides[0] + n * t.strides[1];
  return static_cast<char*>(t.data) + element * static_cast<std::int64_t>(dtype_size(t.dtype));
}

// Tokens [start, start + length) of batch row `row`, as a [1, length, H, D] view.
TensorView rows_of(const TensorView& t, std::int64_t row, std::int64_t start, std::int64_t length) {
  TensorView v = t;
  v.shape[0] = 1;
  v.shape[1] = length;
  v.data = token_at(t, row, start);
  return v;
}

// A group's [documents, N_g, H', D] scratch tensor, shaped like `whole` ([B, N, H', D]) but for
// the batch (one row per document) and the length.
std::unique_ptr<PaddedTensor> group_tensor(Backend& backend, const DocumentGroup& group,
                                           const TensorView& whole, const Options& options) {
  TensorView like = whole;
  like.shape[0] = static_cast<std::int64_t>(group.documents.size());
  return std::make_unique<PaddedTensor>(backend, like, group.plan.seq, options);
}

// Row j of the scratch = document j's tokens of `src`, then zeros (the any-length padding).
void fill_group(Backend& backend, const Packing& packing, const DocumentGroup& group,
                PaddedTensor& dst, const TensorView& src, const Options& options) {
  const TensorView& d = dst.view();
  const std::size_t token = static_cast<std::size_t>(d.strides[1]) * dtype_size(d.dtype);
  for (std::size_t j = 0; j < group.documents.size(); ++j) {
    const Document& doc = packing.documents[group.documents[j]];
    const auto row = static_cast<std::int64_t>(j);
    if (doc.length < d.shape[1]) {
      backend.memset_zero_on(token_at(d, row, doc.length),
                             static_cast<std::size_t>(d.shape[1] - doc.length) * token, options);
    }
    copy_rows(backend, rows_of(d, row, 0, doc.length), rows_of(src, doc.row, doc.start, doc.length),
              doc.length, options);
  }
}

// Each document's rows of the scratch back to its place in `dst`.
void scatter_group(Backend& backend, const Packing& packing, const DocumentGroup& group,
                   const PaddedTensor& src, const TensorView& dst, const Options& options) {
  for (std::size_t j = 0; j < group.documents.size(); ++j) {
    const Document& doc = packing.documents[group.documents[j]];
    copy_rows(backend, rows_of(dst, doc.row, doc.start, doc.length),
              rows_of(src.view(), static_cast<std::int64_t>(j), 0, doc.length), doc.length,
              options);
  }
}

// Options::times summed over the groups' calls.
class SummedTimes {
 public:
  explicit SummedTimes(const Options& options) : options_(options), total_(options.times) {
    if (total_) {
      *total_ = {};
      options_.times = &part_;
    }
  }
  const Options& options() const { return options_; }
  void add() {
    if (!total_) return;
    total_->pyramid += part_.pyramid;
    total_->selection += part_.selection;
    total_->gather += part_.gather;
    total_->attention += part_.attention;
    total_->scatter += part_.scatter;
    total_->communication += part_.communication;
  }

 private:
  Options options_;
  StageTimes* total_;
  StageTimes part_;
};

// The forward of every group: `run(group index, q, k, v, out)` calls the backend on the scratch
// tensors; then the outputs are copied back, and `keep(group index, scratch...)` may take the
// scratch tensors (else they are freed).
template <typename Run, typename Keep>
void forward_groups(Backend& backend, const Packing& packing, const TensorView& q,
                    const TensorView& k, const TensorView& v, const TensorView& out,
                    const Options& options, Run&& run, Keep&& keep) {
  for (std::size_t g = 0; g < packing.groups.size(); ++g) {
    const DocumentGroup& group = packing.groups[g];
    auto q_g = group_tensor(backend, group, q, options);
    auto k_g = group_tensor(backend, group, k, options);
    auto v_g = group_tensor(backend, group, v, options);
    auto out_g = group_tensor(backend, group, out, options);
    fill_group(backend, packing, group, *q_g, q, options);
    fill_group(backend, packing, group, *k_g, k, options);
    fill_group(backend, packing, group, *v_g, v, options);
    run(g, q_g->view(), k_g->view(), v_g->view(), out_g->view());
    scatter_group(backend, packing, group, *out_g, out, options);
    keep(g, q_g, k_g, v_g, out_g);
  }
}

template <typename Run>
void backward_groups(Backend& backend, const Packing& packing, const TensorView& dout,
                     const TensorView& dq, const TensorView& dk, const TensorView& dv,
                     const Options& options, Run&& run) {
  for (std::size_t g = 0; g < packing.groups.size(); ++g) {
    const DocumentGroup& group = packing.groups[g];
    auto dout_g = group_tensor(backend, group, dout, options);
    auto dq_g = group_tensor(backend, group, dq, options);
    auto dk_g = group_tensor(backend, group, dk, options);
    auto dv_g = group_tensor(backend, group, dv, options);
    fill_group(backend, packing, group, *dout_g, dout, options);  // zeros: no gradient from padding
    run(g, dout_g->view(), dq_g->view(), dk_g->view(), dv_g->view());
    scatter_group(backend, packing, group, *dq_g, dq, options);
    scatter_group(backend, packing, group, *dk_g, dk, options);
    scatter_group(backend, packing, group, *dv_g, dv, options);
  }
}

}  // namespace

class VarlenState final : public ContextState {
 public:
  Packing packing;
  std::vector<std::shared_ptr<ContextState>> groups;
  // The scratch q, k, v, out of dense groups: the CUDA backend's dense context refers to its
  // inputs instead of copying them (attention.hpp), so they must live until the backward.
  std::vector<std::unique_ptr<PaddedTensor>> kept;

  void copy_indices(std::int32_t* host_dst) const override {
    for (std::size_t g = 0; g < groups.size(); ++g) {
      groups[g]->copy_indices(host_dst);
      const Plan& plan = packing.groups[g].plan;
      host_dst += plan.batch * plan.kv_heads * plan.S;
    }
  }
};

std::vector<std::int64_t> read_cu_seqlens(const TensorView& cu, Device device, std::int64_t batch,
                                          std::int64_t seq) {
  if (cu.rank != 1) {
    throw InvalidArgument("cu_seqlens", cu.shape_string(),
                          "must be a rank-1 int32 tensor of documents + 1 offsets");
  }
  if (cu.dtype != DType::kInt32) {
    throw InvalidArgument("cu_seqlens", std::string("dtype ") + dtype_name(cu.dtype),
                          "must be int32 (FlashAttention's varlen offsets)");
  }
  if (cu.device != device) {
    throw InvalidArgument("cu_seqlens", std::string("device ") + device_name(cu.device),
                          std::string("must be on q's device ") + device_name(device) +
                              " (host memory with CPU tensors, device memory with CUDA ones)");
  }
  const std::int64_t count = cu.shape[0];
  if (count < 2) {
    throw InvalidArgument("cu_seqlens", cu.shape_string(),
                          "must hold at least two offsets, 0 and B * N (one document or more)");
  }
  if (cu.strides[0] != 1) {
    throw InvalidArgument("cu_seqlens", "stride " + s(cu.strides[0]), "must be contiguous");
  }
  if (cu.data == nullptr) throw InvalidArgument("cu_seqlens", "null", "data must not be null");
  std::vector<std::int32_t> raw(static_cast<std::size_t>(count));
  Backend& backend = backend_for(device);
  backend.copy_to_host(raw.data(), cu.data, raw.size() * sizeof(std::int32_t));

  const std::int64_t total = batch * seq;
  if (raw[0] != 0) throw InvalidArgument("cu_seqlens", entry(0, raw[0]), "must start at 0");
  for (std::size_t i = 1; i < raw.size(); ++i) {
    if (raw[i] <= raw[i - 1]) {
      throw InvalidArgument("cu_seqlens", entry(i, raw[i]) + " after " + entry(i - 1, raw[i - 1]),
                            "must be strictly increasing (no empty documents)");
    }
  }
  const std::size_t last = raw.size() - 1;
  if (raw[last] != total) {
    throw InvalidArgument("cu_seqlens", entry(last, raw[last]),
                          "must end at B * N = " + s(batch) + " * " + s(seq) + " = " + s(total) +
                              " (every token of q belongs to a document)");
  }
  std::vector<std::int64_t> offsets(raw.begin(), raw.end());
  // Every row start b * N is an offset: a document does not straddle two batch rows.
  std::size_t i = 0;
  for (std::int64_t b = 1; b < batch; ++b) {
    while (offsets[i + 1] < b * seq) ++i;
    if (offsets[i + 1] != b * seq) {
      throw InvalidArgument(
          "cu_seqlens", entry(i, raw[i]) + ", " + entry(i + 1, raw[i + 1]),
          "a document must not straddle two batch rows: every row start b * N (here " + s(b * seq) +
              " = " + s(b) + " * " + s(seq) + ") must be an offset");
    }
  }
  return offsets;
}

Packing make_packing(const Config& config, const std::vector<std::int64_t>& offsets,
                     std::int64_t seq, std::int64_t heads, std::int64_t head_dim,
                     std::int64_t kv_heads, Backend& backend, DType dtype) {
  Packing packing;
  // Documents run together when their plans are the same: (dense, run length).
  std::map<std::pair<bool, std::int64_t>, std::size_t> group_of;
  for (std::size_t i = 0; i + 1 < offsets.size(); ++i) {
    const Document doc{offsets[i] / seq, offsets[i] % seq, offsets[i + 1] - offsets[i]};
    const Plan plan = make_plan(config, 1, doc.length, heads, head_dim, kv_heads);
    const Plan run = plan.runs_padded() ? plan.padded() : plan;
    const auto key = std::make_pair(run.dense(), run.seq);
    auto found = group_of.find(key);
    if (found == group_of.end()) {
      found = group_of.emplace(key, packing.groups.size()).first;
      packing.groups.push_back({run, {}, 0});
    }
    packing.groups[found->second].documents.push_back(packing.documents.size());
    packing.documents.push_back(doc);
  }
  Carver carve;
  for (DocumentGroup& group : packing.groups) {
    group.plan.batch = static_cast<std::int64_t>(group.documents.size());
    backend.check_supported(group.plan, dtype);
    group.context_offset = carve.take(context_bytes(group.plan, dtype));
  }
  packing.context_bytes = carve.size();
  return packing;
}

const VarlenState* as_varlen_state(const ContextState& state) {
  return dynamic_cast<const VarlenState*>(&state);
}

std::size_t varlen_index_count(const VarlenState& state) {
  std::size_t count = 0;
  for (const DocumentGroup& group : state.packing.groups) {
    count += static_cast<std::size_t>(group.plan.batch * group.plan.kv_heads * group.plan.S);
  }
  return count;
}

void varlen_backward(Backend& backend, const VarlenState& state, const TensorView& dout,
                     const TensorView& dq, const TensorView& dk, const TensorView& dv,
                     const Options& options) {
  SummedTimes times(options);
  backward_groups(backend, state.packing, dout, dq, dk, dv, options,
                  [&](std::size_t g, const TensorView& dout_g, const TensorView& dq_g,
                      const TensorView& dk_g, const TensorView& dv_g) {
                    backend.backward(state.packing.groups[g].plan, *state.groups[g], dout_g, dq_g,
                                     dk_g, dv_g, times.options());
                    times.add();
                  });
}

std::shared_ptr<ContextState> varlen_forward(Backend& backend, const Packing& packing,
                                             const TensorView& q, const TensorView& k,
                                             const TensorView& v, const TensorView& out,
                                             const Options& options) {
  auto state = std::make_shared<VarlenState>();
  state->packing = packing;
  SummedTimes times(options);
  forward_groups(
      backend, packing, q, k, v, out, options,
      [&](std::size_t g, const TensorView& q_g, const TensorView& k_g, const TensorView& v_g,
          const TensorView& out_g) {
        state->groups.push_back(
            backend.forward(packing.groups[g].plan, q_g, k_g, v_g, out_g, times.options()));
        times.add();
      },
      [&](std::size_t g, auto& q_g, auto& k_g, auto& v_g, auto& out_g) {
        if (!packing.groups[g].plan.dense()) return;
        state->kept.push_back(std::move(q_g));
        state->kept.push_back(std::move(k_g));
        state->kept.push_back(std::move(v_g));
        state->kept.push_back(std::move(out_g));
      });
  return state;
}

void varlen_forward(Backend& backend, const Packing& packing, const TensorView& q,
                    const TensorView& k, const TensorView& v, const TensorView& out, void* context,
                    const Options& options) {
  SummedTimes times(options);
  forward_groups(
      backend, packing, q, k, v, out, options,
      [&](std::size_t g, const TensorView& q_g, const TensorView& k_g, const TensorView& v_g,
          const TensorView& out_g) {
        const DocumentGroup& group = packing.groups[g];
        backend.forward(group.plan, q_g, k_g, v_g, out_g,
                        static_cast<char*>(context) + group.context_offset, times.options());
        times.add();
      },
      [](std::size_t, auto&, auto&, auto&, auto&) {});
}

void varlen_backward(Backend& backend, const Packing& packing, const void* context,
                     const TensorView& dout, const TensorView& dq, const TensorView& dk,
                     const TensorView& dv, const Options& options) {
  SummedTimes times(options);
  backward_groups(backend, packing, dout, dq, dk, dv, options,
                  [&](std::size_t g, const TensorView& dout_g, const TensorView& dq_g,
                      const TensorView& dk_g, const TensorView& dv_g) {
                    const DocumentGroup& group = packing.groups[g];
                    backend.backward(group.plan,
                                     static_cast<const char*>(context) + group.context_offset,
                                     dout_g, dq_g, dk_g, dv_g, times.options());
                    times.add();
                  });
}

namespace {

std::int64_t checked_mul(std::int64_t a, std::int64_t b) {
  std::int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) throw Error("context_bytes_varlen: the bound overflows");
  return r;
}

std::int64_t ceil_mul_div(std::int64_t x, std::int64_t num, std::int64_t den) {
  return (checked_mul(x, num) + den - 1) / den;
}

}  // namespace

// Per document i of length n_i its group's context holds S_i gathered rows per head and
// pyramid_i positions per KV head (context_layout()), each part of each group rounded up to
// 256 bytes. Bounds that hold for every length (docs/DESIGN.md, "Packed documents"):
//   S_i <= n_i * max(1, (1 + (L-1) p) / c)   (c = p^(L-1)): the dense exception has S_i = n_i,
//     a padded length S_i < n_i, and a valid length n_i >= c K gives n_i / c + (L-1) p K;
//   pyramid_i <= 2 padded_i (p >= 2), padded_i <= n_i * max(1, M / S_M) + step, where M is the
//     smallest valid length, S_M its S and step the distance between valid lengths: a length
//     >= M pads by less than step, a shorter one that is not dense has n_i > S_M.
std::size_t context_bytes_varlen(const Config& config, std::int64_t tokens, std::int64_t documents,
                                 std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim,
                                 DType dtype) {
  if (tokens < 1) throw InvalidArgument("tokens", s(tokens), "must be >= 1 (B * N)");
  if (documents < 1 || documents > tokens) {
    throw InvalidArgument("documents", s(documents),
                          "must be in [1, tokens = " + s(tokens) + "] (cu_seqlens' length - 1)");
  }
  const Plan one = make_plan(config, 1, 1, heads, head_dim, kv_heads);  // validates the rest
  std::int64_t rows = tokens, positions = tokens;  // per head (S), per KV head (pyramid)
  // A smallest valid length this large: every document is dense (S_i = pyramid_i = n_i).
  if (config.levels > 1 && one.padded_seq < (std::int64_t{1} << 60)) {
    std::int64_t c = 1;
    for (int l = 1; l < config.levels; ++l) c = checked_mul(c, config.pool);
    const std::int64_t extra = 1 + static_cast<std::int64_t>(config.levels - 1) * config.pool;
    rows = std::max(tokens, ceil_mul_div(tokens, extra, c));
    const std::int64_t least = one.padded_seq, least_S = one.padded_S;  // dense fallback of 1
    const std::int64_t step =
        make_plan(config, 1, least + 1, heads, head_dim, kv_heads).padded_seq - least;
    const std::int64_t padded =
        std::max(tokens, ceil_mul_div(tokens, least, least_S)) + checked_mul(documents, step);
    positions = checked_mul(2, padded);
  }
  const auto h = static_cast<std::size_t>(heads), hkv = static_cast<std::size_t>(one.kv_heads);
  const auto r = static_cast<std::size_t>(rows), p = static_cast<std::size_t>(positions);
  const std::size_t row_bytes = static_cast<std::size_t>(head_dim) * dtype_size(dtype);
  const std::size_t bytes = hkv * r * sizeof(std::int32_t) + hkv * p * sizeof(std::int32_t) +
                            h * r * context_stats_size(dtype) + 2 * h * r * row_bytes +
                            2 * hkv * r * row_bytes;
  // Seven parts per group, each rounded up to Carver::kAlignment.
  return bytes + static_cast<std::size_t>(documents) * 7 * Carver::kAlignment;
}

}  // namespace lighthouse
