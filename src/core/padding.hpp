// Any sequence length (docs/SPEC.md): a length that breaks a shape rule runs on copies of the
// tensors padded with zeros to the plan's padded_seq, and the first seq rows of the results are
// copied back. Built on the backends' existing copies (copy_2d, memset_zero_on), so every backend
// gets it; the copies are queued on Options::stream.
#pragma once

#include <cstdint>

#include "core/backend.hpp"

namespace lighthouse {

// A contiguous [B, padded_seq, H, D] scratch tensor on the backend's device, shaped like `like`
// ([B, N, H, D]) but for the length.
class PaddedTensor {
 public:
  PaddedTensor(Backend& backend, const TensorView& like, std::int64_t padded_seq,
               const Options& options);
  ~PaddedTensor();
  PaddedTensor(const PaddedTensor&) = delete;
  PaddedTensor& operator=(const PaddedTensor&) = delete;

  const TensorView& view() const { return view_; }
  // Copies src's rows ([B, N, H, D], N <= padded_seq) into the first N rows and zeros the rest.
  void fill_from(const TensorView& src);
  // Copies the first dst.shape[1] rows into dst ([B, N, H, D]).
  void copy_to(const TensorView& dst) const;

 private:
  Backend& backend_;
  Options options_;
  TensorView view_;
};

// The first `rows` tokens of src into dst, both [B, *, H, D] views of one device and dtype.
void copy_rows(Backend& backend, const TensorView& dst, const TensorView& src, std::int64_t rows,
               const Options& options);

}  // namespace lighthouse
