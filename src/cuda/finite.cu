// The opt-in input check (Options::check_finite) on the GPU: counts NaN and Inf elements of a
// [B, N, H, D] view, one 16-byte vector per thread. Only a thread that finds one touches the
// counter (an integer atomic), so the common all-finite case writes nothing.
#include "cuda/check.hpp"
#include "cuda/stages.hpp"
#include "cuda/vec.cuh"

namespace lighthouse::cuda {

namespace {

// Grid (N blocks, H, B); block (D / V, tokens per block).
template <typename T>
__global__ void __launch_bounds__(256)
    count_nonfinite_kernel(const TokenTensor x, std::int64_t seq, unsigned* count) {
  constexpr int V = kVec<T>;
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (t >= seq) return;
  float f[V];
  unpack<T>(load16(token_ptr<T>(x, blockIdx.z, t, blockIdx.y, threadIdx.x * V)), f);
  unsigned bad = 0;
#pragma unroll
  for (int e = 0; e < V; ++e) bad += isfinite(f[e]) ? 0u : 1u;
  if (bad > 0) atomicAdd(count, bad);
}

}  // namespace

void launch_count_nonfinite(DType dtype, const TokenTensor& x, std::int64_t batch, std::int64_t seq,
                            std::int64_t heads, std::int64_t head_dim, unsigned* count,
                            cudaStream_t stream) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const RowGrid rg = row_grid(seq, heads, batch, static_cast<int>(head_dim / kVec<T>));
    count_nonfinite_kernel<T><<<rg.grid, rg.block, 0, stream>>>(x, seq, count);
    CUDA_CHECK_LAUNCH("count_nonfinite_kernel");
  });
}

}  // namespace lighthouse::cuda
