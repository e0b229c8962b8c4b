#include "support/library_run.hpp"

#include "support/random.hpp"

namespace lhtest {

Problem random_problem(const lighthouse::Config& config, const Shape& shape, std::uint64_t seed,
                       std::int64_t kv_heads) {
  Problem p{config, shape, {}, {}, {}, {}, kv_heads};
  p.q = random_rows(shape, seed * 4 + 0);
  p.k = random_rows(p.kv_shape(), seed * 4 + 1);
  p.v = random_normal(p.kv_shape().numel(), seed * 4 + 2);
  p.dout = random_normal(shape.numel(), seed * 4 + 3);
  return p;
}

Outputs run_library(const Problem& problem, lighthouse::DType dtype,
                    const lighthouse::Options& options, bool with_backward) {
  const Shape& s = problem.shape;
  const Shape kv = problem.kv_shape();
  const lighthouse::Tensor q = to_tensor(problem.q, dtype, s), k = to_tensor(problem.k, dtype, kv),
                           v = to_tensor(problem.v, dtype, kv), out = nan_tensor(dtype, s);
  lighthouse::Context ctx;
  lighthouse::forward(problem.config, q, k, v, out, ctx, options);
  Outputs r;
  r.plan = ctx.plan();
  r.indices = ctx.indices();
  r.out = to_vector(out);
  if (with_backward) {
    const lighthouse::Tensor dout = to_tensor(problem.dout, dtype, s), dq = nan_tensor(dtype, s),
                             dk = nan_tensor(dtype, kv), dv = nan_tensor(dtype, kv);
    lighthouse::backward(ctx, dout, dq, dk, dv, options);
    r.dq = to_vector(dq);
    r.dk = to_vector(dk);
    r.dv = to_vector(dv);
  }
  return r;
}

}  // namespace lhtest
