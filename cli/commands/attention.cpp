// `lighthouse attention`: run Lighthouse attention on .npy files and write the outputs.
//
// Every check -- flags, files, shapes, the config against N, the backend's support -- and the
// whole computation happen before the first output byte is written; the files are then staged
// and renamed into place together (StagedOutputs), so a failed run leaves no partial output.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/args.hpp"
#include "common/commands.hpp"
#include "common/device_io.hpp"
#include "common/format.hpp"
#include "common/scorer_flags.hpp"
#include "common/staged_outputs.hpp"
#include "lighthouse/attention.hpp"
#include "lighthouse/communicator.hpp"
#include "lighthouse/context_parallel.hpp"
#include "lighthouse/device.hpp"
#include "lighthouse/npy.hpp"

namespace lighthouse::cli {

namespace {

namespace fs = std::filesystem;

struct AttentionArgs {
  std::string q, k, v, dout, out;
  std::string levels, pool, topk, scale, selection = "original";
  std::string device = "cpu", dtype = "float32", threads = "0", cp;
  std::string cu_seqlens;  // packed documents: an int32 1-D .npy of offsets
  ScorerFlags scorer;
  bool check_finite = false;
};

// A float32 [B, N, H, D] array from `path`; anything else is a usage error naming the flag.
NpyArray read_input(const std::string& flag, const std::string& path) {
  require_given(flag, path);
  std::error_code ec;
  if (!fs::exists(path, ec)) reject(flag, path, "no such file");
  if (fs::is_directory(path, ec)) reject(flag, path, "is a folder, not a .npy file");
  NpyArray array;
  try {
    array = read_npy(path);
  } catch (const Error& e) {
    // The reader's message already starts with the file name; don't repeat it.
    std::string what = e.what();
    if (what.rfind(path + ": ", 0) == 0) what = what.substr(path.size() + 2);
    reject(flag, path, "not a readable .npy file: " + what);
  }
  if (array.dtype != DType::kFloat32) {
    reject(flag, path,
           std::string("holds ") + dtype_name(array.dtype) +
               " data; float32 is required (in numpy: a.astype(np.float32))");
  }
  if (array.shape.size() != 4) {
    reject(flag, path, "has shape " + shape_text(array.shape) + "; must be [B, N, H, D]");
  }
  return array;
}

struct Inputs {
  NpyArray q, k, v;
  std::optional<NpyArray> dout;
  std::optional<NpyArray> cu_seqlens;
};

// The offsets of packed documents: an int32 1-D array (the library checks its values).
NpyArray read_offsets(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) reject("--cu-seqlens", path, "no such file");
  if (fs::is_directory(path, ec)) reject("--cu-seqlens", path, "is a folder, not a .npy file");
  NpyArray array;
  try {
    array = read_npy(path);
  } catch (const Error& e) {
    std::string what = e.what();
    if (what.rfind(path + ": ", 0) == 0) what = what.substr(path.size() + 2);
    reject("--cu-seqlens", path, "not a readable .npy file: " + what);
  }
  if (array.dtype != DType::kInt32) {
    reject("--cu-seqlens", path,
           std::string("holds ") + dtype_name(array.dtype) +
               " data; int32 offsets are required (in numpy: a.astype(np.int32))");
  }
  if (array.shape.size() != 1) {
    reject("--cu-seqlens", path,
           "has shape " + shape_text(array.shape) + "; must be 1-D: documents + 1 offsets");
  }
  return array;
}

Inputs read_inputs(const AttentionArgs& a) {
  Inputs in{read_input("--q", a.q), read_input("--k", a.k), read_input("--v", a.v), {}, {}};
  const auto& shape = in.q.shape;
  // k and v may have fewer heads than q (grouped-query attention): [B, N, Hkv, D]; the library
  // checks that Hkv divides H.
  const auto& ks = in.k.shape;
  if (ks[0] != shape[0] || ks[1] != shape[1] || ks[3] != shape[3]) {
    reject("--k", a.k,
           "has shape " + shape_text(ks) + "; must be [B, N, Hkv, D] with --q's B, N and D (" +
               shape_text(shape) + ")");
  }
  if (in.v.shape != ks) {
    reject("--v", a.v,
           "has shape " + shape_text(in.v.shape) + "; must equal --k's " + shape_text(ks));
  }
  if (!a.dout.empty()) {
    in.dout = read_input("--dout", a.dout);
    if (in.dout->shape != shape) {
      reject("--dout", a.dout,
             "has shape " + shape_text(in.dout->shape) + "; must equal --q's " + shape_text(shape));
    }
  }
  if (!a.cu_seqlens.empty()) in.cu_seqlens = read_offsets(a.cu_seqlens);
  return in;
}

// Library rejections that concern the data rather than a flag are reported against the file
// they came from (e.g. "--q = q.npy: seq = 100: must be divisible by 16").
[[noreturn]] void rethrow_for_files(const InvalidArgument& e, const AttentionArgs& a) {
  const std::string& p = e.param();
  if (p == "levels" || p == "pool" || p == "topk" || p == "scale" || p == "selection" ||
      p == "scorer" || p == "dilation" || p == "dtype" || p == "device" || p == "threads" ||
      p == "check_finite" || p == "cp") {
    throw e;  // main() turns these into --levels etc.
  }
  if (p == "k" || p == "kv_heads") reject("--k", a.k, e.what());
  if (p == "v") reject("--v", a.v, e.what());
  if (p == "dout") reject("--dout", a.dout, e.what());
  if (p == "cu_seqlens") reject("--cu-seqlens", a.cu_seqlens, e.what());
  reject("--q", a.q, e.what());
}

void check_finite_host(const std::string& flag, const std::string& path, const NpyArray& array) {
  const float* data = array.data<float>();
  for (std::int64_t i = 0; i < array.numel(); ++i) {
    if (!std::isfinite(data[i])) {
      const auto& s = array.shape;
      const std::int64_t d = i % s[3], h = i / s[3] % s[2], n = i / (s[3] * s[2]) % s[1],
                         b = i / (s[3] * s[2] * s[1]);
      reject(flag, path,
             "non-finite value at [" + std::to_string(b) + ", " + std::to_string(n) + ", " +
                 std::to_string(h) + ", " + std::to_string(d) + "] (--check-finite is on)");
    }
  }
}

void check_out_folder(const std::string& out) {
  require_given("--out", out);
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec)) {
    reject("--out", out, "exists and is not a folder");
  }
}

std::vector<std::int64_t> as_vector(const Shape4& s) {
  return {s[0], s[1], s[2], s[3]};
}

int omp_threads() {
  return omp_get_max_threads();
}

struct Results {
  std::vector<float> out, dq, dk, dv;
  std::vector<std::int32_t> indices;
};

// Context parallelism in one process: `world` ranks as threads (the thread communicator), each
// with its two chunks of the inputs; the results are put back together in the order of the whole
// sequence, so that the files are those of a single-device run, bit for bit.
Results compute_cp(const Config& config, const Inputs& in, const Shape4& shape, int world,
                   const Options& options) {
  const ShardPlan sp = make_shard_plan(config, shape[0], shape[1], shape[2], shape[3], world);
  const std::int64_t numel = shape[0] * shape[1] * shape[2] * shape[3];
  Results r;
  r.out.resize(numel);
  r.indices.resize(static_cast<std::size_t>(shape[0] * shape[2] * sp.plan.S));
  if (in.dout) {
    r.dq.resize(numel);
    r.dk.resize(numel);
    r.dv.resize(numel);
  }
  auto whole = [&](const float* data) {
    return TensorView::contiguous(const_cast<float*>(data), DType::kFloat32, Device::kCPU,
                                  {shape[0], shape[1], shape[2], shape[3]});
  };
  // Each rank's OpenMP workers: an equal share of --threads (0: of every hardware thread).
  Options per_rank = options;
  const int threads = options.threads > 0 ? options.threads : omp_threads();
  per_rank.threads = std::max(1, threads / world);
  run_thread_ranks(world, [&](Communicator& comm) {
    const int rank = comm.rank();
    auto local = [&] {
      return Tensor::empty(DType::kFloat32, Device::kCPU,
                           {shape[0], sp.local_seq, shape[2], shape[3]});
    };
    auto mine = [&](const float* data) {
      Tensor t = local();
      shard(whole(data), world, rank, t);
      return t;
    };
    const Tensor q = mine(in.q.data<float>()), k = mine(in.k.data<float>()),
                 v = mine(in.v.data<float>()), o = local();
    Options opts = per_rank;
    opts.comm = &comm;
    Context ctx;
    forward(config, q, k, v, o, ctx, opts);
    unshard(o, world, rank, whole(r.out.data()));
    unshard_indices(sp, rank, ctx.indices(), r.indices.data());
    if (in.dout) {
      const Tensor dout = mine(in.dout->data<float>()), gq = local(), gk = local(), gv = local();
      backward(ctx, dout, gq, gk, gv, opts);
      unshard(gq, world, rank, whole(r.dq.data()));
      unshard(gk, world, rank, whole(r.dk.data()));
      unshard(gv, world, rank, whole(r.dv.data()));
    }
  });
  return r;
}

int run_attention(const AttentionArgs& a) {
  // 1. Flags.
  require_given("--levels", a.levels);
  require_given("--pool", a.pool);
  require_given("--topk", a.topk);
  Config config;
  config.levels = parse_int32("--levels", a.levels);
  config.pool = parse_int32("--pool", a.pool);
  config.topk = parse_int32("--topk", a.topk);
  if (!a.scale.empty()) config.scale = parse_positive_double("--scale", a.scale);
  config.selection = parse_selection(a.selection, "--selection");
  apply_scorer_flags(a.scorer, config);
  validate(config);
  const Device device = parse_device(a.device, "--device");
  const DType dtype = parse_dtype(a.dtype, "--dtype");
  if (device == Device::kCPU && dtype != DType::kFloat32) {
    reject("--dtype", a.dtype,
           "the cpu device computes in float32 only (bfloat16 and float16 "
           "need --device cuda)");
  }
  if (dtype != DType::kFloat32 && dtype != DType::kBFloat16 && dtype != DType::kFloat16) {
    reject("--dtype", a.dtype, "must be float32, bfloat16 or float16");
  }
  Options options;
  options.threads = parse_int32("--threads", a.threads, 0);
  const int cp = a.cp.empty() ? 0 : parse_int32("--cp", a.cp, 1, 4096);
  if (cp > 0 && device != Device::kCPU) {
    reject("--cp", a.cp,
           "runs its ranks as threads on the cpu device; on GPUs context parallelism needs one "
           "process per GPU (the C++ API over NCCL, or the PyTorch op's cp_group)");
  }
  if (cp > 0 && !a.cu_seqlens.empty()) {
    reject("--cu-seqlens", a.cu_seqlens,
           "packed documents do not run with context parallelism (--cp): documents would cross "
           "the ranks' chunks");
  }
  // The library checks host tensors only; for a device run the CLI checks the files itself.
  options.check_finite = a.check_finite && device == Device::kCPU;
  check_out_folder(a.out);

  // 2. Files and the plan.
  Inputs in = read_inputs(a);
  const Shape4 shape{in.q.shape[0], in.q.shape[1], in.q.shape[2], in.q.shape[3]};
  const Shape4 kv_shape{in.k.shape[0], in.k.shape[1], in.k.shape[2], in.k.shape[3]};
  check_available(device);  // lighthouse::Error (exit 1) if not available
  Plan plan;
  try {
    plan = make_plan(config, shape[0], shape[1], shape[2], shape[3], kv_shape[2]);
    if (cp > 0 && plan.kv_heads != plan.heads) {
      throw InvalidArgument("cp", std::to_string(cp),
                            "context parallelism supports as many KV heads as heads only so far "
                            "(k has " +
                                std::to_string(plan.kv_heads) + ", q " +
                                std::to_string(plan.heads) + ")");
    }
    if (cp > 0) make_shard_plan(config, shape[0], shape[1], shape[2], shape[3], cp);
    check_supported(device, plan, dtype);
  } catch (const InvalidArgument& e) {
    rethrow_for_files(e, a);
  }

  if (a.check_finite && device != Device::kCPU) {
    check_finite_host("--q", a.q, in.q);
    check_finite_host("--k", a.k, in.k);
    check_finite_host("--v", a.v, in.v);
    if (in.dout) check_finite_host("--dout", a.dout, *in.dout);
  }

  // 3. Compute everything in memory.
  std::vector<float> out, dq, dk, dv;
  std::vector<std::int32_t> indices;
  try {
    if (cp > 0) {
      Results r = compute_cp(config, in, shape, cp, options);
      out = std::move(r.out);
      indices = std::move(r.indices);
      dq = std::move(r.dq);
      dk = std::move(r.dk);
      dv = std::move(r.dv);
    } else {
      Tensor q = upload(in.q.data<float>(), shape, dtype, device);
      Tensor k = upload(in.k.data<float>(), kv_shape, dtype, device);
      Tensor v = upload(in.v.data<float>(), kv_shape, dtype, device);
      Tensor o = allocate(shape, dtype, device);
      Context ctx;
      if (in.cu_seqlens) {
        const auto count = static_cast<std::int64_t>(in.cu_seqlens->shape[0]);
        Tensor offsets = Tensor::empty(DType::kInt32, device, {count});
        copy_from_host(device, offsets.data<void>(), in.cu_seqlens->data<std::int32_t>(),
                       static_cast<std::size_t>(count) * sizeof(std::int32_t));
        forward(config, q, k, v, o, offsets, ctx, options);
      } else {
        forward(config, q, k, v, o, ctx, options);
      }
      out = download(o);
      indices = ctx.indices();
      if (in.dout) {
        Tensor dout = upload(in.dout->data<float>(), shape, dtype, device);
        Tensor gq = allocate(shape, dtype, device);
        Tensor gk = allocate(kv_shape, dtype, device);
        Tensor gv = allocate(kv_shape, dtype, device);
        backward(ctx, dout, gq, gk, gv, options);
        dq = download(gq);
        dk = download(gk);
        dv = download(gv);
      }
    }
  } catch (const InvalidArgument& e) {
    rethrow_for_files(e, a);
  }
  // Packed documents: each group's [documents, Hkv, S] one after another, as one 1-D array.
  const std::vector<std::int64_t> index_shape =
      in.cu_seqlens ? std::vector<std::int64_t>{static_cast<std::int64_t>(indices.size())}
                    : std::vector<std::int64_t>{shape[0], kv_shape[2], plan.S};
  if (!in.cu_seqlens &&
      static_cast<std::int64_t>(indices.size()) != shape[0] * kv_shape[2] * plan.S) {
    throw Error("internal: the context returned " + std::to_string(indices.size()) +
                " indices, expected B*Hkv*S = " + std::to_string(shape[0] * kv_shape[2] * plan.S));
  }

  // 4. Write all or nothing.
  StagedOutputs outputs{fs::path(a.out)};
  const auto bnhd = as_vector(shape);
  outputs.add("out.npy", DType::kFloat32, bnhd, out.data());
  outputs.add("indices.npy", DType::kInt32, index_shape, indices.data());
  if (in.dout) {
    outputs.add("dq.npy", DType::kFloat32, bnhd, dq.data());
    outputs.add("dk.npy", DType::kFloat32, as_vector(kv_shape), dk.data());
    outputs.add("dv.npy", DType::kFloat32, as_vector(kv_shape), dv.data());
  }
  outputs.commit();
  return kExitOk;
}

}  // namespace

Command add_attention_command(CLI::App& parent) {
  auto args = std::make_shared<AttentionArgs>();
  CLI::App* app = parent.add_subcommand(
      "attention", "Run Lighthouse attention (and its backward) on .npy files");
  // A flag given twice takes its last value, as in most command-line tools.
  app->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app->footer(
      "Inputs are float32 .npy files: q (and dout) [B, N, H, D], k and v [B, N, Hkv, D] with Hkv\n"
      "dividing H (grouped-query attention below H, multi-query at 1; the head counts come from\n"
      "the files). Writes DIR/out.npy [B, N, H, D] float32 and DIR/indices.npy [B, Hkv, S] int32\n"
      "(one selection per KV group); with --dout also DIR/dq.npy, dk.npy, dv.npy (dk, dv as k).\n"
      "Everything is checked and computed before the first file is written; a failed run leaves\n"
      "no output behind. Exit status: 0 ok, 1 runtime failure, 2 bad flags or inputs.\n"
      "With --cu-seqlens (offsets 0 = cu[0] < cu[1] < ... < cu[docs] = B*N, every row start\n"
      "b*N an offset) each document is attended as its own sequence, as if run alone;\n"
      "DIR/indices.npy is then 1-D: each group of documents of one plan, [documents, Hkv, S],\n"
      "one after another. Not with --cp.");
  app->add_option("--q", args->q, "queries .npy, [B, N, H, D] float32 (required)")
      ->type_name("FILE");
  app->add_option("--k", args->k, "keys .npy, [B, N, Hkv, D] float32, Hkv dividing H (required)")
      ->type_name("FILE");
  app->add_option("--v", args->v, "values .npy, the shape of --k (required)")->type_name("FILE");
  app->add_option("--dout", args->dout, "gradient of the output; also computes dq, dk, dv")
      ->type_name("FILE");
  app->add_option("--levels", args->levels, "pyramid levels L >= 1 (required)")->type_name("L");
  app->add_option("--pool", args->pool, "pooling factor p, a power of two >= 2 (required)")
      ->type_name("P");
  app->add_option("--topk", args->topk, "top-k budget K, a multiple of 128 (required)")
      ->type_name("K");
  app->add_option("--scale", args->scale, "softmax scale (default 1/sqrt(D))")->type_name("X");
  app->add_option("--selection", args->selection,
                  "original (the original's top-k; leaks the future, issue 11), causal, or "
                  "stride (content-free control: evenly spaced refinement)")
      ->capture_default_str()
      ->type_name("MODE");
  add_scorer_flags(app, args->scorer);
  app->add_option("--device", args->device, "cpu or cuda")->capture_default_str()->type_name("DEV");
  app->add_option("--dtype", args->dtype,
                  "compute dtype: float32, or bfloat16/float16 with --device cuda (files stay "
                  "float32)")
      ->capture_default_str()
      ->type_name("DTYPE");
  app->add_option("--threads", args->threads, "CPU threads, 0 = all")
      ->capture_default_str()
      ->type_name("T");
  app->add_flag("--check-finite", args->check_finite, "reject NaN/Inf inputs");
  app->add_option("--cu-seqlens", args->cu_seqlens,
                  "packed documents: int32 1-D .npy of documents + 1 offsets into the B*N tokens "
                  "(FlashAttention varlen); each document attended as its own sequence")
      ->type_name("FILE");
  app->add_option("--cp", args->cp,
                  "context parallelism: run W ranks (threads of this process, cpu only), each "
                  "with 2 of the sequence's 2W chunks; same files as without, bit for bit. "
                  "Needs topk/128 divisible by 2W and H by W")
      ->type_name("W");
  app->add_option("--out", args->out, "output folder, created if missing (required)")
      ->type_name("DIR");
  return {app, [args] { return run_attention(*args); }};
}

}  // namespace lighthouse::cli
