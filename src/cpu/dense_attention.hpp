// Dense causal attention on the CPU (forward with log-sum-exp stats, backward).
#pragma once

#include <cstdint>
#include <span>

namespace lighthouse::cpu {

template <typename T>
struct AttentionHead {
  const T* q;
  const T* k;
  const T* v;
  T* o;
  T* lse;
};
template <typename T>
struct AttentionGradHead {
  const T* q;
  const T* k;
  const T* v;
  const T* o;
  const T* lse;
  const T* dout;
  T* dq;
  T* dk;
  T* dv;
};

template <typename T>
void causal_attention_forward(std::span<const AttentionHead<T>> heads, std::int64_t S,
                              std::int64_t D, std::int64_t ld, T scale, int threads);
template <typename T>
void causal_attention_backward(std::span<const AttentionGradHead<T>> heads, std::int64_t S,
                               std::int64_t D, std::int64_t ld, T scale, int threads);

}  // namespace lighthouse::cpu
