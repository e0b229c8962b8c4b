// cuDNN fused attention (bf16/fp16) against the fp32 reference kernel and a float64 CPU
// reference, plus determinism, graph caching and stream/thread use.
#include <gtest/gtest.h>

#include <cstring>
#include <ostream>
#include <string>
#include <thread>

#include "cuda/attention.hpp"
#include "cuda/cudnn_attention.hpp"
#include "lighthouse/error.hpp"
#include "support/attention_case.hpp"
#include "support/device_buffer.hpp"
#include "support/require_gpu.hpp"
#include "support/sdpa_runs.hpp"

namespace lighthouse::testing {
namespace {

struct Tolerance {
  double out, stats, grad;  // normalised deviations (Deviation::normalized)
};

// bf16 keeps 8 significant bits and fp16 11; cuDNN also rounds P and dS to the storage type
// before its second matmuls, so a few units of the last place are expected.
Tolerance cudnn_tolerance(DType dtype) {
  return dtype == DType::kBFloat16 ? Tolerance{2e-2, 2e-3, 4e-2} : Tolerance{4e-3, 2e-3, 8e-3};
}
// The fp32 kernels against float64: rounding only.
constexpr Tolerance kReferenceTolerance{2e-5, 2e-5, 5e-5};

struct SdpaParam {
  DType dtype;
  std::int64_t d;
  Layout layout;
};

std::string to_string(const SdpaParam& param) {
  const char* layout = param.layout == Layout::kBHSD   ? "BHSD"
                       : param.layout == Layout::kBSHD ? "BSHD"
                                                       : "BSHDPadded";
  return std::string(dtype_name(param.dtype)) + "_d" + std::to_string(param.d) + "_" + layout;
}
std::string param_name(const ::testing::TestParamInfo<SdpaParam>& info) {
  return to_string(info.param);
}
// gtest prints parameters in test listings; the default prints raw bytes, padding included.
void PrintTo(const SdpaParam& param, std::ostream* out) {
  *out << to_string(param);
}

void expect_close(const char* what, const Deviation& dev, double tol) {
  EXPECT_LT(dev.normalized(), tol)
      << what << ": max |err| " << dev.max_abs_err << ", max |ref| " << dev.max_abs_ref;
  // Printed on success too, so that tolerances can be tightened from real numbers.
  std::printf("  %-28s max|err| %.3e  max|ref| %.3e  normalised %.3e (tol %.1e)\n", what,
              dev.max_abs_err, dev.max_abs_ref, dev.normalized(), tol);
}

class CudnnSdpaTest : public GpuTest, public ::testing::WithParamInterface<SdpaParam> {};

TEST_P(CudnnSdpaTest, MatchesFp32KernelAndFloat64Cpu) {
  const SdpaParam param = GetParam();
  // b, h > 1 and s = 300, not a multiple of cuDNN's 64/128-row tiles.
  const AttentionCase problem =
      make_case(2, 3, 300, param.d, param.dtype,
                {param.layout, param.layout, param.layout, param.layout}, 1234);
  const cuda::SdpaDesc& desc = problem.desc;
  const CpuAttention cpu = cpu_attention(problem);
  Stream stream;
  const GpuAttention gpu = run_sdpa(problem, stream.get(), stream.get());
  const GpuAttention ref = run_sdpa(as_float32(problem), stream.get(), stream.get());

  const Tolerance tol = cudnn_tolerance(param.dtype);
  expect_close("fp32 kernel o vs cpu", deviation(desc, ref.o, desc.o_stride, cpu.o),
               kReferenceTolerance.out);
  expect_close("fp32 kernel stats vs cpu", deviation(ref.stats, cpu.stats),
               kReferenceTolerance.stats);
  expect_close("fp32 kernel dq vs cpu", deviation(desc, ref.dq, desc.q_stride, cpu.dq),
               kReferenceTolerance.grad);
  expect_close("fp32 kernel dk vs cpu", deviation(desc, ref.dk, desc.k_stride, cpu.dk),
               kReferenceTolerance.grad);
  expect_close("fp32 kernel dv vs cpu", deviation(desc, ref.dv, desc.v_stride, cpu.dv),
               kReferenceTolerance.grad);

  expect_close("cudnn o vs cpu", deviation(desc, gpu.o, desc.o_stride, cpu.o), tol.out);
  expect_close("cudnn stats vs cpu", deviation(gpu.stats, cpu.stats), tol.stats);
  expect_close("cudnn dq vs cpu", deviation(desc, gpu.dq, desc.q_stride, cpu.dq), tol.grad);
  expect_close("cudnn dk vs cpu", deviation(desc, gpu.dk, desc.k_stride, cpu.dk), tol.grad);
  expect_close("cudnn dv vs cpu", deviation(desc, gpu.dv, desc.v_stride, cpu.dv), tol.grad);

  expect_close("cudnn o vs fp32 kernel", deviation(desc, gpu.o, ref.o, desc.o_stride), tol.out);
  expect_close("cudnn dq vs fp32 kernel", deviation(desc, gpu.dq, ref.dq, desc.q_stride), tol.grad);
  expect_close("cudnn dk vs fp32 kernel", deviation(desc, gpu.dk, ref.dk, desc.k_stride), tol.grad);
  expect_close("cudnn dv vs fp32 kernel", deviation(desc, gpu.dv, ref.dv, desc.v_stride), tol.grad);
}

INSTANTIATE_TEST_SUITE_P(Cudnn, CudnnSdpaTest,
                         ::testing::Values(SdpaParam{DType::kBFloat16, 64, Layout::kBSHD},
                                           SdpaParam{DType::kBFloat16, 128, Layout::kBSHD},
                                           SdpaParam{DType::kFloat16, 64, Layout::kBSHD},
                                           SdpaParam{DType::kFloat16, 128, Layout::kBSHD},
                                           SdpaParam{DType::kBFloat16, 64, Layout::kBHSD},
                                           SdpaParam{DType::kFloat16, 128, Layout::kBSHDPadded}),
                         param_name);

class CudnnSdpa : public GpuTest {};

// A longer sequence, several tiles past the first: checked against the fp32 kernel only (the
// float64 CPU reference would dominate the test time).
TEST_F(CudnnSdpa, LongSequenceMatchesFp32Kernel) {
  const AttentionCase problem = make_case(1, 2, 1537, 128, DType::kBFloat16, {}, 99);
  const cuda::SdpaDesc& desc = problem.desc;
  const GpuAttention gpu = run_sdpa(problem);
  const GpuAttention ref = run_sdpa(as_float32(problem));
  const Tolerance tol = cudnn_tolerance(desc.dtype);
  expect_close("o", deviation(desc, gpu.o, ref.o, desc.o_stride), tol.out);
  std::vector<double> ref_stats(ref.stats.begin(), ref.stats.end());
  expect_close("stats", deviation(gpu.stats, ref_stats), tol.stats);
  expect_close("dq", deviation(desc, gpu.dq, ref.dq, desc.q_stride), tol.grad);
  expect_close("dk", deviation(desc, gpu.dk, ref.dk, desc.k_stride), tol.grad);
  expect_close("dv", deviation(desc, gpu.dv, ref.dv, desc.v_stride), tol.grad);
}

void expect_bitwise_equal(const GpuAttention& a, const GpuAttention& b, const char* what) {
  EXPECT_TRUE(a.raw_o == b.raw_o) << what << ": o differs";
  EXPECT_TRUE(a.raw_stats == b.raw_stats) << what << ": stats differ";
  EXPECT_TRUE(a.raw_dq == b.raw_dq) << what << ": dq differs";
  EXPECT_TRUE(a.raw_dk == b.raw_dk) << what << ": dk differs";
  EXPECT_TRUE(a.raw_dv == b.raw_dv) << what << ": dv differs";
}

TEST_F(CudnnSdpa, RepeatedRunsAreBitwiseEqual) {
  for (DType dtype : {DType::kBFloat16, DType::kFloat16, DType::kFloat32}) {
    const AttentionCase problem = make_case(2, 4, 777, 128, dtype, {}, 7);
    const GpuAttention first = run_sdpa(problem);
    const GpuAttention second = run_sdpa(problem);
    expect_bitwise_equal(first, second, dtype_name(dtype));
  }
}

TEST_F(CudnnSdpa, GraphsAreBuiltOncePerShape) {
  const AttentionCase problem = make_case(1, 2, 200, 64, DType::kBFloat16, {}, 3);
  const GpuAttention first = run_sdpa(problem);
  const std::size_t graphs = cuda::cudnn_cached_graph_count();
  const std::size_t workspace = cuda::cudnn_workspace_bytes();
  EXPECT_GE(graphs, 2u);  // this shape's forward and backward, at least
  run_sdpa(problem);
  EXPECT_EQ(cuda::cudnn_cached_graph_count(), graphs) << "same shape, no new graph";
  EXPECT_EQ(cuda::cudnn_workspace_bytes(), workspace) << "same shape, no new workspace";

  run_sdpa(make_case(1, 2, 201, 64, DType::kBFloat16, {}, 3));
  EXPECT_EQ(cuda::cudnn_cached_graph_count(), graphs + 2) << "new s: one forward, one backward";
  run_sdpa(make_case(1, 2, 200, 64, DType::kFloat32, {}, 3));
  EXPECT_EQ(cuda::cudnn_cached_graph_count(), graphs + 2) << "float32 does not use cuDNN";
}

// cuDNN's fast (atomic dQ) backward, for when the deterministic one's quadratic workspace does
// not fit: same accuracy, and its own graph (the flag is part of the cache key).
TEST_F(CudnnSdpa, FastBackwardMatchesFp32Kernel) {
  AttentionCase problem = make_case(2, 3, 300, 128, DType::kBFloat16, {}, 31);
  const cuda::SdpaDesc& desc = problem.desc;
  const GpuAttention ref = run_sdpa(as_float32(problem));
  const GpuAttention deterministic = run_sdpa(problem);
  const std::size_t graphs = cuda::cudnn_cached_graph_count();
  problem.desc.deterministic = false;
  const GpuAttention fast = run_sdpa(problem);
  EXPECT_EQ(cuda::cudnn_cached_graph_count(), graphs + 1) << "a backward graph of its own only";
  EXPECT_TRUE(fast.raw_o == deterministic.raw_o) << "the forward does not depend on the flag";
  const Tolerance tol = cudnn_tolerance(desc.dtype);
  expect_close("dq", deviation(desc, fast.dq, ref.dq, desc.q_stride), tol.grad);
  expect_close("dk", deviation(desc, fast.dk, ref.dk, desc.k_stride), tol.grad);
  expect_close("dv", deviation(desc, fast.dv, ref.dv, desc.v_stride), tol.grad);
  // Against the deterministic algorithm: the same sums in another order (bf16 storage).
  expect_close("dq vs deterministic", deviation(desc, fast.dq, deterministic.dq, desc.q_stride),
               2e-2);
  expect_close("dk vs deterministic", deviation(desc, fast.dk, deterministic.dk, desc.k_stride),
               2e-2);
  expect_close("dv vs deterministic", deviation(desc, fast.dv, deterministic.dv, desc.v_stride),
               2e-2);
}

// A deterministic backward whose S^2 workspace exceeds the device is refused before anything is
// allocated, with S, the bytes and the remedy in the message (not a bare allocation failure).
TEST_F(CudnnSdpa, OversizedDeterministicWorkspaceIsExplained) {
  std::size_t free = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free, &total), cudaSuccess);
  // About 2 * h * s^2 bytes: enough heads for twice the device's memory.
  const std::int64_t s = 131072, d = 64;
  const auto per_head = static_cast<std::size_t>(2 * s * s);
  const auto h = static_cast<std::int64_t>(2 * total / per_head + 1);
  cuda::SdpaDesc desc;
  desc.b = 1;
  desc.h = h;
  desc.s = s;
  desc.d = d;
  desc.dtype = DType::kBFloat16;
  desc.scale = 0.125;
  desc.q_stride = desc.k_stride = desc.v_stride = desc.o_stride = {h * s * d, s * d, d, 1};
  const std::size_t bytes = static_cast<std::size_t>(h * s * d) * 2;  // zeros: uniform softmax
  DeviceBuffer q(bytes), k(bytes), v(bytes), o(bytes), dout(bytes), dq(bytes), dk(bytes), dv(bytes),
      stats(static_cast<std::size_t>(h * s) * sizeof(float));
  cuda::sdpa_forward(desc, q.get(), k.get(), v.get(), o.get(), stats.as<float>(), nullptr);
  try {
    cuda::sdpa_backward(desc, q.get(), k.get(), v.get(), o.get(), dout.get(), stats.as<float>(),
                        dq.get(), dk.get(), dv.get(), nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    GTEST_SKIP() << "this cuDNN's deterministic backward needs no S^2 workspace";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("S = 131072"), std::string::npos) << message;
    EXPECT_NE(message.find("Options::deterministic = false"), std::string::npos) << message;
    EXPECT_NE(message.find("bytes"), std::string::npos) << message;
  }
  // The fast algorithm runs the same problem.
  desc.deterministic = false;
  cuda::sdpa_backward(desc, q.get(), k.get(), v.get(), o.get(), dout.get(), stats.as<float>(),
                      dq.get(), dk.get(), dv.get(), nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// One-token sequences, which cuDNN's SDPA rejects (s_q = s_kv = 1), go to single_key_attention.cu:
// with one key the softmax weight is exactly 1, so o = v and dv = dout bit for bit, dq = dk = 0;
// the statistics are scale * q.k.
TEST_F(CudnnSdpa, OneTokenSequencesAreExact) {
  for (DType dtype : {DType::kBFloat16, DType::kFloat16}) {
    for (Layout layout : {Layout::kBSHD, Layout::kBHSD}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + (layout == Layout::kBSHD ? " BSHD" : " BHSD"));
      const AttentionCase problem =
          make_case(2, 3, 1, 64, dtype, {layout, layout, layout, layout}, 5);
      const cuda::SdpaDesc& desc = problem.desc;
      const CpuAttention cpu = cpu_attention(problem);
      const GpuAttention gpu = run_sdpa(problem);
      EXPECT_EQ(deviation(desc, gpu.o, desc.o_stride, cpu.o).max_abs_err, 0.0);
      EXPECT_EQ(deviation(desc, gpu.dv, desc.v_stride, cpu.dv).max_abs_err, 0.0);
      // The float64 reference's dS is dout.v - dout.o, zero up to its own rounding.
      EXPECT_LT(deviation(desc, gpu.dq, desc.q_stride, cpu.dq).max_abs_err, 1e-12);
      EXPECT_LT(deviation(desc, gpu.dk, desc.k_stride, cpu.dk).max_abs_err, 1e-12);
      expect_close("one-token stats vs cpu", deviation(gpu.stats, cpu.stats), 1e-5);
      expect_bitwise_equal(gpu, run_sdpa(problem), "one-token rerun");
    }
  }
}

// A dimension of size 1 is never stepped over, so its stride may be anything (here: odd).
TEST_F(CudnnSdpa, SizeOneDimensionsMayHaveAnyStride) {
  const AttentionCase problem = make_case(1, 2, 100, 64, DType::kBFloat16, {}, 17);
  AttentionCase odd = problem;
  odd.desc.q_stride[0] = odd.desc.k_stride[0] = odd.desc.v_stride[0] = odd.desc.o_stride[0] = 12345;
  expect_bitwise_equal(run_sdpa(problem), run_sdpa(odd), "odd batch stride");
}

// The workspace is shared by the streams of a thread: alternating streams must not change
// results (a missing ordering would let the backward overwrite a live forward workspace).
TEST_F(CudnnSdpa, TwoStreamsGiveTheSameResults) {
  const AttentionCase problem = make_case(2, 2, 333, 64, DType::kBFloat16, {}, 11);
  const GpuAttention one_stream = run_sdpa(problem);
  Stream a, b;
  for (int round = 0; round < 3; ++round) {
    const GpuAttention two_streams = run_sdpa(problem, a.get(), b.get());
    expect_bitwise_equal(one_stream, two_streams, "streams a/b");
  }
}

// Each thread has its own handle, graphs and workspace.
TEST_F(CudnnSdpa, ConcurrentThreadsGiveTheSameResults) {
  const AttentionCase p1 = make_case(1, 3, 250, 64, DType::kBFloat16, {}, 21);
  const AttentionCase p2 = make_case(2, 2, 190, 128, DType::kFloat16, {}, 22);
  const GpuAttention r1 = run_sdpa(p1), r2 = run_sdpa(p2);
  GpuAttention t1, t2;
  std::string error1, error2;
  const auto worker = [](const AttentionCase& p, GpuAttention& out, std::string& error) {
    try {
      Stream stream;
      for (int n = 0; n < 3; ++n) out = run_sdpa(p, stream.get(), stream.get());
    } catch (const std::exception& e) {
      error = e.what();
    }
  };
  std::thread a(worker, std::cref(p1), std::ref(t1), std::ref(error1));
  std::thread b(worker, std::cref(p2), std::ref(t2), std::ref(error2));
  a.join();
  b.join();
  ASSERT_EQ(error1, "");
  ASSERT_EQ(error2, "");
  expect_bitwise_equal(r1, t1, "thread 1");
  expect_bitwise_equal(r2, t2, "thread 2");
}

}  // namespace
}  // namespace lighthouse::testing
