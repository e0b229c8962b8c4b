#include "cuda/pyramid_dilated.hpp"

#include <array>
#include <cmath>
#include <cstddef>
#include <memory>

#include "cuda/attention.hpp"
#include "cuda/check.hpp"

namespace lighthouse::cuda {

namespace {

// Device memory from the stream-ordered pool for the rest of a scope, freed in stream order.
class PoolBuffer {
 public:
  PoolBuffer(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
    CUDA_CHECK(cudaMallocAsync(&data_, bytes, stream));
  }
  PoolBuffer(const PoolBuffer&) = delete;
  PoolBuffer& operator=(const PoolBuffer&) = delete;
  ~PoolBuffer() {
    if (data_) cudaFreeAsync(data_, stream_);  // nothing to report from a destructor
  }
  void* get() const { return data_; }

 private:
  cudaStream_t stream_;
  void* data_ = nullptr;
};

// (b, h, s, d) strides of the [B, dilation * H, N / dilation, D] view of a [B, N, H, D] tensor
// (head j * H + h, row m = token m * dilation + j), or none when the heads are not packed inside
// a token.
bool dilated_strides(const TokenTensor& x, std::int64_t heads, std::int64_t dilation,
                     std::array<std::int64_t, 4>& strides) {
  // Head c = j H + h sits at j sn + h sh = c s_c for every (j, h) only if sn = H sh (then
  // s_c = sh); with one head, s_c = sn.
  std::int64_t head_stride = 0;
  if (heads == 1) {
    head_stride = x.sn;
  } else if (x.sn == heads * x.sh) {
    head_stride = x.sh;
  } else {
    return false;
  }
  strides = {x.sb, head_stride, dilation * x.sn, 1};
  return true;
}

}  // namespace

void dilated_scores(const Plan& plan, const Geometry& g, DType dtype, const TensorView& q,
                    const TensorView& k, const TensorView& v, float* score_q, float* score_k,
                    float* first_q, float* first_k, cudaStream_t stream) {
  const std::int64_t B = g.batch, N = g.seq, H = g.heads, D = g.head_dim;
  const std::int64_t dil = plan.config.dilation;
  const std::size_t esize = dtype_size(dtype);
  const auto block_bytes = static_cast<std::size_t>(B * N * H * D) * esize;
  const auto row_count = static_cast<std::size_t>(B * N * H);

  // Contiguous [B, N, H, D] token tensors: the attention output and, where needed, copies.
  const TokenTensor packed_layout{nullptr, N * H * D, H * D, D};
  TokenTensor x[3] = {token_tensor(q), token_tensor(k), token_tensor(v)};
  std::array<std::int64_t, 4> st[3];
  std::unique_ptr<PoolBuffer> copies[3];  // only for tensors whose heads are not packed
  for (int i = 0; i < 3; ++i) {
    if (dilated_strides(x[i], H, dil, st[i])) continue;
    copies[i] = std::make_unique<PoolBuffer>(block_bytes, stream);
    TokenTensor dst = packed_layout;
    dst.data = copies[i]->get();
    launch_copy_tokens(dtype, x[i], dst, B, N, H, D, stream);
    x[i] = dst;
    dilated_strides(x[i], H, dil, st[i]);
  }

  PoolBuffer out(block_bytes, stream);
  PoolBuffer stats(row_count * sizeof(float), stream);
  PoolBuffer tokens(2 * row_count * sizeof(float), stream);
  TokenTensor o = packed_layout;
  o.data = out.get();
  std::array<std::int64_t, 4> o_stride{};
  dilated_strides(o, H, dil, o_stride);
  float* token_score[2] = {static_cast<float*>(tokens.get()),
                           static_cast<float*>(tokens.get()) + row_count};

  SdpaDesc desc;
  desc.b = B;
  desc.h = dil * H;
  desc.s = N / dil;
  desc.d = D;
  desc.dtype = dtype;
  desc.scale = 1.0 / std::sqrt(static_cast<double>(D));  // the scorer's own, not Config::scale
  desc.o_stride = o_stride;
  // Attn(Q, K, V) -> query scores; Attn(K, Q, V) -> key scores.
  for (int pass = 0; pass < 2; ++pass) {
    const int a = pass == 0 ? 0 : 1, b = pass == 0 ? 1 : 0;
    desc.q_stride = st[a];
    desc.k_stride = st[b];
    desc.v_stride = st[2];
    sdpa_forward(desc, x[a].data, x[b].data, x[2].data, o.data, static_cast<float*>(stats.get()),
                 stream);
    launch_token_scores(g, dtype, o, token_score[pass], stream);
  }
  launch_pool_scores(g, token_score[0], token_score[1], score_q, score_k, first_q, first_k, stream);
}

}  // namespace lighthouse::cuda
