#include "core/padding.hpp"

#include <cstddef>
#include <cstdint>

namespace lighthouse {

namespace {

char* at(const TensorView& t, std::int64_t b, std::int64_t n, std::int64_t h) {
  const std::int64_t element = b * t.strides[0] + n * t.strides[1] + h * t.strides[2];
  return static_cast<char*>(t.data) + element * static_cast<std::int64_t>(dtype_size(t.dtype));
}

// The (H, D) part of a token is one packed run of H*D elements, and tokens do not overlap.
bool packed_tokens(const TensorView& t) {
  return t.strides[2] == t.shape[3] && t.strides[1] >= t.shape[2] * t.shape[3];
}

}  // namespace

void copy_rows(Backend& backend, const TensorView& dst, const TensorView& src, std::int64_t rows,
               const Options& options) {
  if (rows == 0) return;
  const std::int64_t B = src.shape[0], H = src.shape[2], D = src.shape[3];
  const auto es = static_cast<std::int64_t>(dtype_size(src.dtype));
  if (packed_tokens(dst) && packed_tokens(src)) {  // one 2D copy per batch
    for (std::int64_t b = 0; b < B; ++b) {
      backend.copy_2d(at(dst, b, 0, 0), static_cast<std::size_t>(dst.strides[1] * es),
                      at(src, b, 0, 0), static_cast<std::size_t>(src.strides[1] * es),
                      static_cast<std::size_t>(H * D * es), static_cast<std::size_t>(rows),
                      options);
    }
    return;
  }
  const bool pitched = dst.strides[1] >= D && src.strides[1] >= D;
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t h = 0; h < H; ++h) {
      if (pitched) {  // one 2D copy per (batch, head)
        backend.copy_2d(at(dst, b, 0, h), static_cast<std::size_t>(dst.strides[1] * es),
                        at(src, b, 0, h), static_cast<std::size_t>(src.strides[1] * es),
                        static_cast<std::size_t>(D * es), static_cast<std::size_t>(rows), options);
        continue;
      }
      for (std::int64_t n = 0; n < rows; ++n) {  // any other strides (broadcast, reversed)
        backend.copy_2d(at(dst, b, n, h), static_cast<std::size_t>(D * es), at(src, b, n, h),
                        static_cast<std::size_t>(D * es), static_cast<std::size_t>(D * es), 1,
                        options);
      }
    }
  }
}

PaddedTensor::PaddedTensor(Backend& backend, const TensorView& like, std::int64_t padded_seq,
                           const Options& options)
    : backend_(backend), options_(options) {
  view_ = like;
  view_.shape[1] = padded_seq;
  view_.strides = {padded_seq * like.shape[2] * like.shape[3], like.shape[2] * like.shape[3],
                   like.shape[3], 1};
  view_.data = backend_.allocate_on(view_.nbytes(), options_.stream);
}

PaddedTensor::~PaddedTensor() {
  backend_.deallocate_on(view_.data, options_.stream);
}

void PaddedTensor::fill_from(const TensorView& src) {
  const std::int64_t n = src.shape[1], padded = view_.shape[1];
  const std::size_t token = static_cast<std::size_t>(view_.strides[1]) * dtype_size(view_.dtype);
  for (std::int64_t b = 0; b < view_.shape[0]; ++b) {
    backend_.memset_zero_on(at(view_, b, n, 0), static_cast<std::size_t>(padded - n) * token,
                            options_);
  }
  copy_rows(backend_, view_, src, n, options_);
}

void PaddedTensor::copy_to(const TensorView& dst) const {
  copy_rows(backend_, dst, view_, dst.shape[1], options_);
}

}  // namespace lighthouse
