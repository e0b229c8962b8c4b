#include "support/sdpa_runs.hpp"

#include <cstring>

#include "cuda/check.hpp"
#include "support/device_buffer.hpp"

namespace lighthouse::testing {
namespace {

bool is_half(DType dtype) {
  return dtype == DType::kBFloat16 || dtype == DType::kFloat16;
}

DeviceBuffer upload(const std::vector<float>& values, DType dtype) {
  return is_half(dtype) ? DeviceBuffer::from_host(to_half_bits(values, dtype))
                        : DeviceBuffer::from_host(values);
}

void download(const DeviceBuffer& buffer, DType dtype, std::vector<float>& values,
              std::vector<std::uint8_t>& raw) {
  raw = buffer.to_host<std::uint8_t>();
  if (is_half(dtype)) {
    std::vector<std::uint16_t> bits(raw.size() / 2);
    std::memcpy(bits.data(), raw.data(), raw.size());
    values = from_half_bits(bits, dtype);
  } else {
    values.resize(raw.size() / 4);
    std::memcpy(values.data(), raw.data(), raw.size());
  }
}

}  // namespace

GpuAttention run_sdpa(const AttentionCase& problem, cudaStream_t forward_stream,
                      cudaStream_t backward_stream) {
  const cuda::SdpaDesc& desc = problem.desc;
  const std::size_t element = is_half(desc.dtype) ? 2 : 4;
  DeviceBuffer q = upload(problem.q, desc.dtype);
  DeviceBuffer k = upload(problem.k, desc.dtype);
  DeviceBuffer v = upload(problem.v, desc.dtype);
  DeviceBuffer dout = upload(problem.dout, desc.dtype);
  DeviceBuffer o(buffer_elements(desc, desc.o_stride) * element);
  DeviceBuffer stats(desc.b * desc.h * desc.s * sizeof(float));
  DeviceBuffer dq(q.bytes()), dk(k.bytes()), dv(v.bytes());

  cuda::sdpa_forward(desc, q.get(), k.get(), v.get(), o.get(), stats.as<float>(), forward_stream);
  if (backward_stream != forward_stream) {
    // The caller's job in real use: the backward reads what the forward wrote.
    CUDA_CHECK(cudaStreamSynchronize(forward_stream));
  }
  cuda::sdpa_backward(desc, q.get(), k.get(), v.get(), o.get(), dout.get(), stats.as<float>(),
                      dq.get(), dk.get(), dv.get(), backward_stream);

  GpuAttention result;
  download(o, desc.dtype, result.o, result.raw_o);
  download(stats, DType::kFloat32, result.stats, result.raw_stats);
  download(dq, desc.dtype, result.dq, result.raw_dq);
  download(dk, desc.dtype, result.dk, result.raw_dk);
  download(dv, desc.dtype, result.dv, result.raw_dv);
  return result;
}

AttentionCase as_float32(AttentionCase problem) {
  problem.desc.dtype = DType::kFloat32;
  return problem;
}

Stream::Stream() {
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
}
Stream::~Stream() {
  (void)cudaStreamDestroy(stream_);
}

}  // namespace lighthouse::testing
