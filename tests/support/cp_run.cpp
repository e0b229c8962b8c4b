#include "support/cp_run.hpp"

#include "lighthouse/context_parallel.hpp"
#include "support/random.hpp"

namespace lhtest {

CpOutputs run_cp(const Problem& problem, lighthouse::DType dtype, int world,
                 const lighthouse::Options& options, bool with_backward) {
  using lighthouse::Tensor;
  const Shape& s = problem.shape;
  const Shape local{s.B, s.N / world, s.H, s.D};
  const Tensor q = to_tensor(problem.q, dtype, s), k = to_tensor(problem.k, dtype, s),
               v = to_tensor(problem.v, dtype, s), dout = to_tensor(problem.dout, dtype, s);
  const Tensor out = nan_tensor(dtype, s), dq = nan_tensor(dtype, s), dk = nan_tensor(dtype, s),
               dv = nan_tensor(dtype, s);
  CpOutputs r;
  r.forward_stats.resize(world);
  r.backward_stats.resize(world);
  r.forward_times.resize(world);
  std::vector<std::vector<std::int32_t>> indices(world);
  lighthouse::run_thread_ranks(world, [&](lighthouse::Communicator& comm) {
    const int rank = comm.rank();
    auto mine = [&](const Tensor& whole) {
      Tensor t = nan_tensor(dtype, local);
      lighthouse::shard(whole, world, rank, t);
      return t;
    };
    const Tensor lq = mine(q), lk = mine(k), lv = mine(v), lout = nan_tensor(dtype, local);
    lighthouse::Options o = options;
    o.comm = &comm;
    lighthouse::StageTimes times;
    o.times = &times;
    lighthouse::Context ctx;
    comm.reset_stats();
    lighthouse::forward(problem.config, lq, lk, lv, lout, ctx, o);
    r.forward_stats[rank] = comm.stats();
    r.forward_times[rank] = times;
    if (rank == 0) r.plan = ctx.plan();
    indices[rank] = ctx.indices();
    lighthouse::unshard(lout, world, rank, out);
    if (with_backward) {
      const Tensor ldout = mine(dout), ldq = nan_tensor(dtype, local),
                   ldk = nan_tensor(dtype, local), ldv = nan_tensor(dtype, local);
      comm.reset_stats();
      lighthouse::backward(ctx, ldout, ldq, ldk, ldv, o);
      r.backward_stats[rank] = comm.stats();
      lighthouse::unshard(ldq, world, rank, dq);
      lighthouse::unshard(ldk, world, rank, dk);
      lighthouse::unshard(ldv, world, rank, dv);
    }
  });
  const lighthouse::ShardPlan sp =
      lighthouse::make_shard_plan(problem.config, s.B, s.N, s.H, s.D, world);
  r.indices.assign(static_cast<std::size_t>(s.B * s.H * r.plan.S), -1);
  for (int rank = 0; rank < world; ++rank) {
    lighthouse::unshard_indices(sp, rank, indices[rank], r.indices.data());
  }
  r.out = to_vector(out);
  if (with_backward) {
    r.dq = to_vector(dq);
    r.dk = to_vector(dk);
    r.dv = to_vector(dv);
  }
  return r;
}

}  // namespace lhtest
