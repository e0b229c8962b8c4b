// A copy between two [B, N, H, D] views of any (16-byte multiple) strides: one thread per
// 16-byte vector. The dilated scorer copies inputs whose heads are not packed inside a token
// (pyramid_dilated.cpp).
#include "cuda/check.hpp"
#include "cuda/stages.hpp"
#include "cuda/vec.cuh"

namespace lighthouse::cuda {

namespace {

// Grid (token blocks, H, B); block (D / V, tokens per block).
template <typename T>
__global__ void __launch_bounds__(256)
    copy_tokens_kernel(const TokenTensor src, const TokenTensor dst, std::int64_t seq) {
  constexpr int V = kVec<T>;
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (t >= seq) return;
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const int d = static_cast<int>(threadIdx.x) * V;
  store16(token_ptr_mut<T>(dst, b, t, h, d), load16(token_ptr<T>(src, b, t, h, d)));
}

}  // namespace

void launch_copy_tokens(DType dtype, const TokenTensor& src, const TokenTensor& dst,
                        std::int64_t batch, std::int64_t seq, std::int64_t heads,
                        std::int64_t head_dim, cudaStream_t stream) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const RowGrid rg = row_grid(seq, heads, batch, static_cast<int>(head_dim / kVec<T>));
    copy_tokens_kernel<T><<<rg.grid, rg.block, 0, stream>>>(src, dst, seq);
    CUDA_CHECK_LAUNCH("copy_tokens_kernel");
  });
}

}  // namespace lighthouse::cuda
