#include "cuda/buffer_reuse.hpp"

namespace lighthouse::cuda {

ByteSpan span_of(const TensorView& t) {
  if (t.data == nullptr || t.numel() == 0) return {};
  // Element offsets of the lowest and the highest element from data (strides may be negative).
  std::int64_t low = 0, high = 0;
  for (int d = 0; d < t.rank; ++d) {
    const std::int64_t reach = (t.shape[d] - 1) * t.strides[d];
    (reach < 0 ? low : high) += reach;
  }
  const auto size = static_cast<std::int64_t>(dtype_size(t.dtype));
  const auto base = reinterpret_cast<std::intptr_t>(t.data);
  return {static_cast<std::uintptr_t>(base + low * size),
          static_cast<std::uintptr_t>(base + (high + 1) * size)};
}

ByteSpan span_of(const void* data, std::size_t bytes) {
  const auto base = reinterpret_cast<std::uintptr_t>(data);
  return data == nullptr ? ByteSpan{} : ByteSpan{base, base + bytes};
}

const char* gradient_scratch_name(GradientScratch scratch) {
  switch (scratch) {
    case GradientScratch::kWorkspace:
      return "workspace";
    case GradientScratch::kOneBlock:
      return "one block per gradient";
    case GradientScratch::kTwoBlocks:
      return "two blocks in dk";
  }
  return "?";
}

GradientScratch choose_gradient_scratch(const TensorView& dout, const TensorView& dq,
                                        const TensorView& dk, const TensorView& dv,
                                        const ByteSpan& context, std::size_t block) {
  const TensorView* grads[3] = {&dq, &dk, &dv};
  ByteSpan spans[3];
  for (int i = 0; i < 3; ++i) {
    if (!grads[i]->is_contiguous() || grads[i]->data == nullptr) return GradientScratch::kWorkspace;
    spans[i] = span_of(*grads[i]);
  }
  const ByteSpan read = span_of(dout);
  for (int i = 0; i < 3; ++i) {
    if (spans[i].overlaps(read) || spans[i].overlaps(context)) return GradientScratch::kWorkspace;
    for (int j = i + 1; j < 3; ++j) {
      if (spans[i].overlaps(spans[j])) return GradientScratch::kWorkspace;
    }
  }
  // Shapes are equal (validated), so one capacity holds for all three.
  const std::size_t capacity = dq.nbytes();
  if (block == 0 || capacity < block) return GradientScratch::kWorkspace;
  return capacity / 2 >= block ? GradientScratch::kTwoBlocks : GradientScratch::kOneBlock;
}

bool out_holds_scratch(const TensorView& q, const TensorView& k, const TensorView& v,
                       const TensorView& out, const ByteSpan& context, std::size_t bytes) {
  if (!out.is_contiguous() || out.data == nullptr || out.nbytes() < bytes) return false;
  const ByteSpan written = span_of(out);
  for (const TensorView* t : {&q, &k, &v}) {
    if (written.overlaps(span_of(*t))) return false;
  }
  return !written.overlaps(context);
}

}  // namespace lighthouse::cuda
