// Context parallelism on the GPU against one GPU on the same inputs: W ranks as threads sharing
// the device (the thread communicator on device memory: the CUDA hooks, edge kernels and packing
// copies of every rank run), and a real one-rank NCCL communicator (W = 1: the NCCL path). The
// stages are the same kernels on the same rows, so indices and every fp32 result are the same
// bits; in bf16 the attention is cuDNN over H / W heads instead of H (W = 1: the same call, so
// the same bits).
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "lighthouse/lighthouse.hpp"
#include "support/require_gpu.hpp"

namespace {

using lighthouse::Config;
using lighthouse::Device;
using lighthouse::DType;
using lighthouse::Tensor;

struct Shape {
  std::int64_t B, N, H, D;
};

// bf16 round to nearest even, as bits, and back.
std::uint16_t to_bf16(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<std::uint16_t>(u >> 16);
}
float from_bf16(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// Inputs with varied row norms (clear winners for the selection), representable in bf16.
std::vector<float> random_rows(const Shape& s, std::uint32_t seed, bool spread) {
  std::uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
  auto uniform = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(state >> 11) * 0x1.0p-53;
  };
  std::vector<float> x(static_cast<std::size_t>(s.B * s.N * s.H * s.D));
  for (std::size_t row = 0; row < x.size() / s.D; ++row) {
    const double gain = spread ? std::exp(1.5 * (uniform() - 0.5)) : 1.0;
    for (std::int64_t d = 0; d < s.D; ++d) {
      x[row * s.D + d] = from_bf16(to_bf16(static_cast<float>(gain * (2 * uniform() - 1))));
    }
  }
  return x;
}

Tensor upload(const std::vector<float>& host, const Shape& s, DType dtype) {
  Tensor t = Tensor::empty(dtype, Device::kCUDA, {s.B, s.N, s.H, s.D});
  if (dtype == DType::kFloat32) {
    lighthouse::copy_from_host(Device::kCUDA, t.view().data, host.data(), host.size() * 4);
  } else {
    std::vector<std::uint16_t> bits(host.size());
    for (std::size_t i = 0; i < host.size(); ++i) bits[i] = to_bf16(host[i]);
    lighthouse::copy_from_host(Device::kCUDA, t.view().data, bits.data(), bits.size() * 2);
  }
  return t;
}

std::vector<float> download(const Tensor& t) {
  lighthouse::synchronize(Device::kCUDA);
  std::vector<float> host(static_cast<std::size_t>(t.numel()));
  if (t.view().dtype == DType::kFloat32) {
    lighthouse::copy_to_host(Device::kCUDA, host.data(), t.view().data, host.size() * 4);
  } else {
    std::vector<std::uint16_t> bits(host.size());
    lighthouse::copy_to_host(Device::kCUDA, bits.data(), t.view().data, bits.size() * 2);
    for (std::size_t i = 0; i < host.size(); ++i) host[i] = from_bf16(bits[i]);
  }
  return host;
}

struct Results {
  std::vector<float> out, dq, dk, dv;
  std::vector<std::int32_t> indices;
};

struct Inputs {
  Shape shape;
  std::vector<float> q, k, v, dout;
};

Inputs make_inputs(const Shape& s) {
  return {s, random_rows(s, 1, true), random_rows(s, 2, true), random_rows(s, 3, false),
          random_rows(s, 4, false)};
}

Results one_gpu(const Config& config, const Inputs& in, DType dtype) {
  const Shape& s = in.shape;
  const Tensor q = upload(in.q, s, dtype), k = upload(in.k, s, dtype), v = upload(in.v, s, dtype),
               dout = upload(in.dout, s, dtype);
  const Tensor out = Tensor::empty(dtype, Device::kCUDA, {s.B, s.N, s.H, s.D}),
               dq = Tensor::empty(dtype, Device::kCUDA, {s.B, s.N, s.H, s.D}),
               dk = Tensor::empty(dtype, Device::kCUDA, {s.B, s.N, s.H, s.D}),
               dv = Tensor::empty(dtype, Device::kCUDA, {s.B, s.N, s.H, s.D});
  lighthouse::Context ctx;
  lighthouse::forward(config, q, k, v, out, ctx);
  lighthouse::backward(ctx, dout, dq, dk, dv);
  return {download(out), download(dq), download(dk), download(dv), ctx.indices()};
}

// This rank's part of a context-parallel run, put back into the whole results (`r`).
void run_rank(lighthouse::Communicator& comm, const Config& config, const Inputs& in, DType dtype,
              Results& r) {
  const int world = comm.size(), rank = comm.rank();
  const Shape& s = in.shape;
  const Shape local{s.B, s.N / world, s.H, s.D};
  auto host_view = [](const std::vector<float>& x, const Shape& sh) {
    return lighthouse::TensorView::contiguous(const_cast<float*>(x.data()), DType::kFloat32,
                                              Device::kCPU, {sh.B, sh.N, sh.H, sh.D});
  };
  auto mine = [&](const std::vector<float>& whole) {
    std::vector<float> part(static_cast<std::size_t>(local.B * local.N * local.H * local.D));
    lighthouse::shard(host_view(whole, s), world, rank, host_view(part, local));
    return upload(part, local, dtype);
  };
  auto back = [&](const Tensor& t, std::vector<float>& whole) {
    const std::vector<float> part = download(t);
    lighthouse::unshard(host_view(part, local), world, rank, host_view(whole, s));
  };
  const Tensor q = mine(in.q), k = mine(in.k), v = mine(in.v), dout = mine(in.dout);
  auto empty = [&] {
    return Tensor::empty(dtype, Device::kCUDA, {local.B, local.N, local.H, local.D});
  };
  const Tensor out = empty(), dq = empty(), dk = empty(), dv = empty();
  lighthouse::Options o;
  o.comm = &comm;
  o.stream = comm.stream();
  lighthouse::Context ctx;
  lighthouse::forward(config, q, k, v, out, ctx, o);
  lighthouse::backward(ctx, dout, dq, dk, dv, o);
  back(out, r.out);
  back(dq, r.dq);
  back(dk, r.dk);
  back(dv, r.dv);
  const auto sp = lighthouse::make_shard_plan(config, s.B, s.N, s.H, s.D, world);
  lighthouse::unshard_indices(sp, rank, ctx.indices(), r.indices.data());
}

Results sized_like(const Results& ref) {
  Results r;
  r.out.assign(ref.out.size(), NAN);
  r.dq.assign(ref.out.size(), NAN);
  r.dk.assign(ref.out.size(), NAN);
  r.dv.assign(ref.out.size(), NAN);
  r.indices.assign(ref.indices.size(), -1);
  return r;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(b[i])) continue;  // another rank's entry (the NCCL test with W > 1)
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

// Indices exactly; the tensors bit for bit (`bitwise`) or to `tolerance` (relative L2).
void expect_equal(const Results& cp, const Results& ref, bool bitwise, double tolerance,
                  const std::string& what) {
  EXPECT_TRUE(cp.indices == ref.indices) << what << ": indices";
  const std::pair<const char*, const std::vector<float>*> parts[] = {
      {"out", &cp.out}, {"dq", &cp.dq}, {"dk", &cp.dk}, {"dv", &cp.dv}};
  const std::vector<float>* refs[] = {&ref.out, &ref.dq, &ref.dk, &ref.dv};
  for (int i = 0; i < 4; ++i) {
    const bool same =
        std::memcmp(parts[i].second->data(), refs[i]->data(), refs[i]->size() * sizeof(float)) == 0;
    const double err = rel_l2(*parts[i].second, *refs[i]);
    std::printf("[ cp       ] %s %s: rel L2 %.3g, %s\n", what.c_str(), parts[i].first, err,
                same ? "bitwise equal" : "not bitwise equal");
    if (bitwise) {
      EXPECT_TRUE(same) << what << ": " << parts[i].first << " (rel L2 " << err << ")";
    } else {
      EXPECT_LE(err, tolerance) << what << ": " << parts[i].first;
    }
  }
}

struct Case {
  const char* name;
  Shape shape;
  Config config;
};

const Case kCases[] = {
    {"L3_p4_K1024", {1, 16384, 4, 64}, {.levels = 3, .pool = 4, .topk = 1024, .scale = {}}},
    {"L2_p2_K1024", {2, 2048, 4, 128}, {.levels = 2, .pool = 2, .topk = 1024, .scale = {}}},
    {"dense", {1, 2048, 4, 128}, {.levels = 1, .pool = 2, .topk = 128, .scale = {}}},
};

// One stream per thread rank, for the life of the process: ranks that share the GPU need their
// own streams (the library's workspaces are per stream).
std::vector<void*> streams(int world) {
  static std::vector<void*> made;
  while (static_cast<int>(made.size()) < world) {
    cudaStream_t s = nullptr;
    if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) {
      throw lighthouse::Error("cudaStreamCreate failed");
    }
    made.push_back(s);
  }
  return {made.begin(), made.begin() + world};
}

TEST(CudaContextParallel, ThreadRanksOnOneGpuEqualOneGpu) {
  LIGHTHOUSE_REQUIRE_GPU();
  for (const Case& c : kCases) {
    const Inputs in = make_inputs(c.shape);
    for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
      const Results ref = one_gpu(c.config, in, dtype);
      for (int world : {1, 2, 4}) {
        const std::string what = std::string(c.name) + " " + lighthouse::dtype_name(dtype) +
                                 " cp=" + std::to_string(world);
        SCOPED_TRACE(what);
        Results cp = sized_like(ref);
        lighthouse::run_thread_ranks(
            world, [&](lighthouse::Communicator& comm) { run_rank(comm, c.config, in, dtype, cp); },
            Device::kCUDA, streams(world));
        // fp32: the same kernels on the same rows, per head. bf16: cuDNN over H / W heads
        // (W = 1: the very same call).
        const bool bitwise = dtype == DType::kFloat32 || world == 1;
        expect_equal(cp, ref, bitwise, 1e-2, what);
      }
    }
  }
}

// The reference's entries of this rank only (the others NaN, indices -1), so that a rank of an
// NCCL group compares its own part (every rank computes the whole single-GPU reference).
Results mine_only(const Results& ref, const Results& cp, const Shape& s, int world, int rank) {
  Results m = sized_like(ref);
  const Shape local{s.B, s.N / world, s.H, s.D};
  auto view = [](const std::vector<float>& x, const Shape& sh) {
    return lighthouse::TensorView::contiguous(const_cast<float*>(x.data()), DType::kFloat32,
                                              Device::kCPU, {sh.B, sh.N, sh.H, sh.D});
  };
  const std::vector<float>* from[] = {&ref.out, &ref.dq, &ref.dk, &ref.dv};
  std::vector<float>* to[] = {&m.out, &m.dq, &m.dk, &m.dv};
  for (int i = 0; i < 4; ++i) {
    std::vector<float> part(static_cast<std::size_t>(local.B * local.N * local.H * local.D));
    lighthouse::shard(view(*from[i], s), world, rank, view(part, local));
    lighthouse::unshard(view(part, local), world, rank, view(*to[i], s));
  }
  for (std::size_t i = 0; i < ref.indices.size(); ++i) {
    if (cp.indices[i] != -1) m.indices[i] = ref.indices[i];
  }
  return m;
}

// NCCL cases for W ranks: H = 8 heads (W <= 8 divides them), topk / 128 = 2W tiles.
std::vector<Case> nccl_cases(int world) {
  const std::int64_t w = world;
  return {
      {"L3_p4", {1, 8192 * w, 8, 64}, {.levels = 3, .pool = 4, .topk = 256 * world, .scale = {}}},
      {"L2_p2", {2, 2048 * w, 8, 128}, {.levels = 2, .pool = 2, .topk = 256 * world, .scale = {}}},
      {"dense", {1, 1024 * w, 8, 128}, {.levels = 1, .pool = 2, .topk = 128, .scale = {}}},
  };
}

// NCCL: one process alone (W = 1, a real one-rank communicator; ctest runs it so), or every
// process of `torchrun --no-python --nproc-per-node W` (scripts/gpu-cp-check): each rank runs
// its shard over NCCL and compares it with the single-GPU result it computes itself. W = 1 is
// the very same computation (bitwise); W > 1 in fp32 the same kernels on the same rows
// (bitwise), in bf16 cuDNN over H / W heads (rel L2 <= 1e-2).
TEST(CudaContextParallel, NcclEqualsOneGpu) {
  LIGHTHOUSE_REQUIRE_GPU();
  if (!lighthouse::nccl_available()) {
    FAIL() << "this CUDA build has no NCCL (configure with -DLIGHTHOUSE_NCCL_ROOT=...)";
  }
  // torchrun's ranks of one job share one id file: they are children of one agent process.
  const std::string tag = std::getenv("WORLD_SIZE") ? "job" + std::to_string(::getppid())
                                                    : "pid" + std::to_string(::getpid());
  const std::string id =
      (std::filesystem::temp_directory_path() / ("lighthouse-cp-test-" + tag + ".id")).string();
  auto comm = lighthouse::make_nccl_communicator_from_env(id);
  const int world = comm->size(), rank = comm->rank();
  for (const Case& c : nccl_cases(world)) {
    const Inputs in = make_inputs(c.shape);
    for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
      const std::string what = std::string(c.name) + " " + lighthouse::dtype_name(dtype) +
                               " nccl rank " + std::to_string(rank) + "/" + std::to_string(world);
      SCOPED_TRACE(what);
      const Results ref = one_gpu(c.config, in, dtype);
      Results cp = sized_like(ref);
      run_rank(*comm, c.config, in, dtype, cp);
      const auto written = std::count_if(cp.indices.begin(), cp.indices.end(),
                                         [](std::int32_t i) { return i != -1; });
      EXPECT_EQ(written * world, static_cast<std::int64_t>(ref.indices.size()));
      const bool bitwise = dtype == DType::kFloat32 || world == 1;
      expect_equal(cp, mine_only(ref, cp, c.shape, world, rank), bitwise, 1e-2, what);
      EXPECT_GT(comm->stats().collectives, 0);
    }
  }
}

TEST(CudaContextParallel, ErrorsNameTheParameter) {
  LIGHTHOUSE_REQUIRE_GPU();
  const Shape s{1, 1024, 4, 64};
  const Inputs in = make_inputs(s);
  // A device communicator of thread ranks with a stream that is not its own.
  try {
    lighthouse::run_thread_ranks(
        2,
        [&](lighthouse::Communicator& comm) {
          const Tensor q = upload(in.q, s, DType::kBFloat16);
          lighthouse::Options o;
          o.comm = &comm;
          o.stream = reinterpret_cast<void*>(0x1);
          lighthouse::Context ctx;
          lighthouse::forward({.levels = 1, .pool = 2, .topk = 128, .scale = {}}, q, q, q, q, ctx,
                              o);
        },
        Device::kCUDA, streams(2));
    ADD_FAILURE() << "accepted";
  } catch (const lighthouse::InvalidArgument& e) {
    EXPECT_EQ(e.param(), "stream") << e.what();
  }
}

}  // namespace
