// libFuzzer harness for the .npy reader. Build with clang and -DLIGHTHOUSE_FUZZ=ON, then e.g.
//   build/fuzz/tests/fuzz/npy_fuzzer -max_total_time=60 -dict=tests/fuzz/npy.dict \
//       /tmp/npy_corpus tests/fuzz/corpus
// Same contract as tests/io/npy_fuzz_test.cpp: every input parses or raises lighthouse::Error
// (anything else escapes, terminates and is reported as a crash), and a parsed array survives
// serialize -> parse unchanged.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lighthouse/error.hpp"
#include "lighthouse/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  lighthouse::NpyArray a;
  try {
    a = lighthouse::parse_npy(input, "fuzz.npy");
  } catch (const lighthouse::Error&) {
    return 0;
  }
  const std::size_t itemsize =
      a.dtype == lighthouse::DType::kFloat32 || a.dtype == lighthouse::DType::kInt32 ? 4 : 8;
  if (a.numel() < 0 || a.bytes.size() != static_cast<std::size_t>(a.numel()) * itemsize) {
    __builtin_trap();
  }
  const lighthouse::NpyArray b =
      lighthouse::parse_npy(lighthouse::serialize_npy(a.dtype, a.shape, a.bytes.data()));
  if (b.dtype != a.dtype || b.shape != a.shape || b.bytes != a.bytes) __builtin_trap();
  return 0;
}
