#include "train/cuda/matmul.hpp"

#include <string>

#include "cuda/check.hpp"
#include "lighthouse/error.hpp"
#include "train/cuda/column_major.hpp"

namespace lighthouse::train::cuda {

namespace {

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::kBFloat16:
      return CUDA_R_16BF;
    case DType::kFloat32:
      return CUDA_R_32F;
    default:
      throw InvalidArgument("matmul dtype", dtype_name(dtype), "must be bfloat16 or float32");
  }
}

// The largest power of two (at most 256) that divides the address: cuBLASLt's heuristic must
// only offer algorithms that work at the alignment the operands really have.
int alignment_of(const void* p) {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  int align = 256;
  while (align > 1 && address % static_cast<std::uintptr_t>(align) != 0) align /= 2;
  return align;
}

std::string shape_text(Trans ta, Trans tb, std::int64_t m, std::int64_t n, std::int64_t k) {
  return std::string("[") + std::to_string(m) + " x " + std::to_string(k) + "]" +
         (ta == Trans::kYes ? "^T" : "") + " * [" + std::to_string(k) + " x " + std::to_string(n) +
         "]" + (tb == Trans::kYes ? "^T" : "");
}

}  // namespace

// cuBLASLt's "A" is our B and its "B" our A (column_major.hpp).
struct Matmul::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, cd = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (cd) cublasLtMatrixLayoutDestroy(cd);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

Matmul::Matmul(cudaStream_t stream)
    : stream_(stream), workspace_("the cuBLASLt workspace", kWorkspaceBytes, stream) {
  CUBLAS_CHECK(cublasLtCreate(&handle_));
}

Matmul::~Matmul() {
  plans_.clear();
  if (handle_) cublasLtDestroy(handle_);
}

Matmul::Plan& Matmul::plan_for(const Key& key) {
  auto found = plans_.find(key);
  if (found != plans_.end()) return *found->second;
  const auto [ta_i, tb_i, m, n, k, lda, ldb, ldd, in_i, out_i, accumulate, align_a, align_b,
              align_c, align_d] = key;
  const auto ta = static_cast<Trans>(ta_i), tb = static_cast<Trans>(tb_i);
  const cudaDataType_t in = cuda_type(static_cast<DType>(in_i));
  const cudaDataType_t out = cuda_type(static_cast<DType>(out_i));
  auto plan = std::make_unique<Plan>();
  const ColumnMajorProduct cm = column_major(ta, tb, m, n, k, lda, ldb, ldd);
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = cm.transpose_first ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = cm.transpose_second ? CUBLAS_OP_T : CUBLAS_OP_N;
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
  const auto layout = [](cublasLtMatrixLayout_t* out, cudaDataType_t type, const StoredMatrix& x) {
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(out, type, static_cast<std::uint64_t>(x.rows),
                                            static_cast<std::uint64_t>(x.cols), x.ld));
  };
  layout(&plan->a, in, cm.first);
  layout(&plan->b, in, cm.second);
  layout(&plan->cd, out, cm.result);

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  cublasLtMatmulHeuristicResult_t result{};
  int found_count = 0;
  try {
    const std::uint64_t workspace = kWorkspaceBytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
    const std::uint32_t aligns[4] = {
        static_cast<std::uint32_t>(align_b), static_cast<std::uint32_t>(align_a),
        static_cast<std::uint32_t>(align_c), static_cast<std::uint32_t>(align_d)};
    const cublasLtMatmulPreferenceAttributes_t which[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; ++i) {
      CUBLAS_CHECK(
          cublasLtMatmulPreferenceSetAttribute(pref, which[i], &aligns[i], sizeof aligns[i]));
    }
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->cd,
                                                plan->cd, pref, 1, &result, &found_count));
  } catch (...) {
    cublasLtMatmulPreferenceDestroy(pref);
    throw;
  }
  cublasLtMatmulPreferenceDestroy(pref);
  if (found_count == 0) {
    throw Error("cuBLASLt has no algorithm for the product " + shape_text(ta, tb, m, n, k) + " (" +
                dtype_name(static_cast<DType>(in_i)) + " -> " +
                dtype_name(static_cast<DType>(out_i)) + ", accumulate " +
                std::to_string(accumulate) + ")");
  }
  plan->algo = result.algo;
  return *plans_.emplace(key, std::move(plan)).first->second;
}

void Matmul::run(Trans ta, Trans tb, std::int64_t m, std::int64_t n, std::int64_t k,
                 const Operand& a, const Operand& b, float beta, const void* c, void* d,
                 DType d_dtype, std::int64_t ldd) {
  if (m == 0 || n == 0) return;
  if (a.dtype != b.dtype) {
    throw InvalidArgument("matmul B dtype", dtype_name(b.dtype),
                          std::string("must equal A's (") + dtype_name(a.dtype) + ")");
  }
  if (a.dtype == DType::kFloat32 && d_dtype != DType::kFloat32) {
    throw InvalidArgument("matmul D dtype", dtype_name(d_dtype),
                          "must be float32 when A and B are float32");
  }
  if (beta != 0.0f && beta != 1.0f) {
    throw InvalidArgument("matmul beta", std::to_string(beta), "must be 0 or 1");
  }
  if (beta == 0.0f || c == nullptr) c = d;
  const Key key{static_cast<int>(ta),
                static_cast<int>(tb),
                m,
                n,
                k,
                a.ld,
                b.ld,
                ldd,
                static_cast<int>(a.dtype),
                static_cast<int>(d_dtype),
                beta != 0.0f ? 1 : 0,
                alignment_of(a.data),
                alignment_of(b.data),
                alignment_of(c),
                alignment_of(d)};
  Plan& plan = plan_for(key);
  const float alpha = 1.0f;
  CUBLAS_CHECK(cublasLtMatmul(handle_, plan.desc, &alpha, b.data, plan.a, a.data, plan.b, &beta, c,
                              plan.cd, d, plan.cd, &plan.algo, workspace_.get(), workspace_.bytes(),
                              stream_));
  MatmulShape& shape =
      shapes_[{static_cast<int>(ta), static_cast<int>(tb), m, n, k, static_cast<int>(a.dtype),
               static_cast<int>(d_dtype), beta != 0.0f ? 1 : 0}];
  if (shape.calls == 0) shape = MatmulShape{ta, tb, m, n, k, a.dtype, d_dtype, beta != 0.0f, 0};
  ++shape.calls;
}

std::vector<MatmulShape> Matmul::take_shapes() {
  std::vector<MatmulShape> out;
  for (auto& entry : shapes_) out.push_back(entry.second);
  shapes_.clear();
  return out;
}

}  // namespace lighthouse::train::cuda
