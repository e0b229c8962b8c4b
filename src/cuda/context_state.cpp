#include "cuda/context_state.hpp"

#include "cuda/check.hpp"

namespace lighthouse::cuda {

CudaState::CudaState(const Plan& plan, DType dtype, cudaStream_t stream, void* external)
    : dtype_(dtype), stream_(stream) {
  const ContextLayout at = context_layout(plan, dtype);
  index_count_ = static_cast<std::size_t>(plan.batch * plan.kv_heads * plan.S);
  if (!external) CUDA_CHECK(cudaMallocAsync(&base_, at.bytes, stream));
  char* base = static_cast<char*>(external ? external : base_);
  indices = reinterpret_cast<std::int32_t*>(base + at.indices);
  position = reinterpret_cast<std::int32_t*>(base + at.position);
  stats = reinterpret_cast<float*>(base + at.stats);
  sel = {base + at.q, base + at.k, base + at.v, base + at.o};
  span_ = span_of(base, at.bytes);
}

CudaState::~CudaState() {
  if (base_) cudaFreeAsync(base_, stream_);  // nothing to report from a destructor
}

void CudaState::copy_indices(std::int32_t* host_dst) const {
  CUDA_CHECK(cudaMemcpyAsync(host_dst, indices, index_count_ * sizeof(std::int32_t),
                             cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
}

DenseState::DenseState(const Plan& plan, DType dtype, const TensorView& q, const TensorView& k,
                       const TensorView& v, const TensorView& out, cudaStream_t stream)
    : q(q), k(k), v(v), out(out), dtype_(dtype), stream_(stream), plan_(plan) {
  const std::size_t rows = static_cast<std::size_t>(plan.batch * plan.heads * plan.seq);
  CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&stats), rows * sizeof(float), stream));
}

DenseState::~DenseState() {
  if (stats) cudaFreeAsync(stats, stream_);
}

void DenseState::copy_indices(std::int32_t* host_dst) const {
  for (std::int64_t bh = 0; bh < plan_.batch * plan_.kv_heads; ++bh) {
    for (std::int64_t t = 0; t < plan_.seq; ++t) {
      *host_dst++ = static_cast<std::int32_t>(t);
    }
  }
}

void stream_wait(cudaStream_t waiter, cudaStream_t producer) {
  cudaEvent_t event = nullptr;
  CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  const cudaError_t recorded = cudaEventRecord(event, producer);
  const cudaError_t waited =
      recorded == cudaSuccess ? cudaStreamWaitEvent(waiter, event, 0) : recorded;
  cudaEventDestroy(event);  // released once the recorded work completes
  CUDA_CHECK(waited);
}

}  // namespace lighthouse::cuda
