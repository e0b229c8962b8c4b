// Randomised robustness test for the .npy reader: valid files of every dtype and format version
// are mutated (bit flips, byte overwrites, truncation, insertions, deletions, and header-aware
// edits such as huge numbers, other dtypes and bad length fields). Every outcome must be a
// parsed array that survives a round trip, or a lighthouse::Error that names the file -- never
// another exception or a crash. Run under the debug preset (ASan + UBSan) for memory errors,
// with UBSAN_OPTIONS=halt_on_error=1 (the preset's UBSan only prints, and the test would pass).
//
// The seed is fixed, so a failure reproduces; LIGHTHOUSE_FUZZ_ITERATIONS sets the count.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "lighthouse/error.hpp"
#include "lighthouse/npy.hpp"

namespace lighthouse {
namespace {

constexpr std::uint64_t kSeed = 0x5eed'1f0c'a7e5'0001;
constexpr long kDefaultIterations = 600000;  // ~3-5 s in Release on a lightly loaded core
constexpr long kFileCheckEvery = 250;        // also compare read_npy on a real file this often

long iterations() {
  const char* env = std::getenv("LIGHTHOUSE_FUZZ_ITERATIONS");
  if (!env || !*env) return kDefaultIterations;
  const long n = std::strtol(env, nullptr, 10);
  return n > 0 ? n : kDefaultIterations;
}

// Rewrites a version 1.0 file as version 2.0 or 3.0 (a u32 header length).
std::string as_version(const std::string& v1, int major) {
  if (major == 1) return v1;
  const std::uint32_t len = static_cast<unsigned char>(v1[8]) |
                            (static_cast<std::uint32_t>(static_cast<unsigned char>(v1[9])) << 8);
  std::string out = v1.substr(0, 6);
  out += static_cast<char>(major);
  out += '\0';
  for (int i = 0; i < 4; ++i) out += static_cast<char>((len >> (8 * i)) & 0xff);
  return out + v1.substr(10);
}

std::vector<std::string> seed_corpus() {
  const std::vector<std::vector<std::int64_t>> shapes = {{},     {0},       {3},
                                                         {2, 3}, {1, 2, 2}, {2, 0, 5}};
  const std::vector<unsigned char> data(12 * 8, 0x41);
  std::vector<std::string> corpus;
  for (const DType dtype : {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64}) {
    for (const auto& shape : shapes) {
      const std::string v1 = serialize_npy(dtype, shape, data.data());
      for (const int major : {1, 2, 3}) corpus.push_back(as_version(v1, major));
    }
  }
  // Hand-written spellings numpy does not produce but accepts, so that mutations start from
  // them too: other key order, double quotes, no trailing comma, no padding.
  const std::string body = "{\"shape\": (2,3), 'descr':'<i4', 'fortran_order' : False}";
  const std::string v1 = std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(body.size()) +
                         '\0' + body + std::string(24, '\x07');
  for (const int major : {1, 2, 3}) corpus.push_back(as_version(v1, major));
  return corpus;
}

class Mutator {
 public:
  explicit Mutator(std::uint64_t seed) : rng_(seed) {}

  std::string mutate(std::string s) {
    const int rounds = below(2) ? 1 : 2 + static_cast<int>(below(3));  // 1 to 4
    for (int r = 0; r < rounds; ++r) {
      const std::size_t before = s.size();
      edit_at_ = std::string::npos;
      mutate_once(s);
      // Usually keep the length field in step with an edit inside the header text, so that
      // the edit reaches the dict parser instead of only upsetting the length check.
      if (s.size() != before && below(4) != 0) fix_header_length(s, before);
    }
    return s;
  }

 private:
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  template <typename T, std::size_t N>
  const T& pick(const std::array<T, N>& items) {
    return items[below(N)];
  }

  // Most of the interest is in the header, so positions favour its first 160 bytes.
  std::size_t position(const std::string& s, bool allow_end = false) {
    const std::size_t n = s.size() + (allow_end ? 1 : 0);
    if (n == 0) return 0;
    return below(4) != 0 ? below(std::min<std::size_t>(n, 160)) : below(n);
  }

  void mutate_once(std::string& s) {
    static constexpr std::array<std::string_view, 32> kTokens = {"(",
                                                                 ")",
                                                                 ",",
                                                                 "'",
                                                                 "\"",
                                                                 "{",
                                                                 "}",
                                                                 ":",
                                                                 " ",
                                                                 "\n",
                                                                 "\\",
                                                                 "-",
                                                                 "L",
                                                                 "True",
                                                                 "False",
                                                                 "'descr': '<f4', ",
                                                                 "'shape': (1,), ",
                                                                 "'fortran_order': False, ",
                                                                 "(,)",
                                                                 "()",
                                                                 "99999999999999999999",
                                                                 "9223372036854775807",
                                                                 "9223372036854775808",
                                                                 "4294967296",
                                                                 "-1",
                                                                 "0",
                                                                 "<f8",
                                                                 ">f4",
                                                                 "|i1",
                                                                 "[('a', '<f4')]",
                                                                 "\x93NUMPY",
                                                                 "\0"};
    static constexpr std::array<std::string_view, 12> kNumbers = {"99999999999999999999",
                                                                  "9223372036854775807",
                                                                  "9223372036854775808",
                                                                  "4294967296",
                                                                  "3037000500",
                                                                  "-1",
                                                                  "-9223372036854775808",
                                                                  "0",
                                                                  "1",
                                                                  "65536",
                                                                  "2305843009213693952",
                                                                  "18446744073709551616"};
    static constexpr std::array<std::string_view, 14> kDescrs = {"<f4", "<f8", "<i4", "<i8", ">f4",
                                                                 ">f8", ">i4", ">i8", "|f4", "=f8",
                                                                 "<f2", "<u8", "",    "<"};
    static constexpr std::array<unsigned char, 12> kBytes = {0x00, 0xff, 0x7f, 0x80, '(',  ')',
                                                             ',',  '\'', '9',  ' ',  '\n', 0x93};
    switch (below(14)) {
      case 0:  // bit flip
        if (!s.empty()) s[position(s)] ^= static_cast<char>(1u << below(8));
        break;
      case 1:  // byte overwrite
        if (!s.empty()) {
          s[position(s)] = static_cast<char>(below(2) ? pick(kBytes) : below(256));
        }
        break;
      case 2:  // truncation at any point
        s.resize(below(s.size() + 1));
        break;
      case 3: {  // insert random bytes or a syntax token
        std::string ins;
        if (below(2)) {
          ins = pick(kTokens);
          if (ins.empty()) ins.assign(1, '\0');
        } else {
          for (std::uint64_t i = 0, n = 1 + below(8); i < n; ++i)
            ins += static_cast<char>(below(256));
        }
        edit_at_ = position(s, true);
        s.insert(edit_at_, ins);
        break;
      }
      case 4:  // delete a range
        if (!s.empty()) {
          const std::size_t at = position(s);
          s.erase(edit_at_ = at, 1 + below(std::min<std::size_t>(16, s.size() - at)));
        }
        break;
      case 5: {  // replace a run of digits in the header with an edge-case number
        std::vector<std::size_t> starts;
        for (std::size_t i = 10; i < std::min<std::size_t>(s.size(), 256); ++i) {
          if (std::isdigit(static_cast<unsigned char>(s[i])) &&
              !std::isdigit(static_cast<unsigned char>(s[i - 1]))) {
            starts.push_back(i);
          }
        }
        if (starts.empty()) break;
        const std::size_t at = starts[below(starts.size())];
        std::size_t end = at;
        while (end < s.size() && std::isdigit(static_cast<unsigned char>(s[end]))) ++end;
        s.replace(edit_at_ = at, end - at, pick(kNumbers));
        break;
      }
      case 6: {  // swap the dtype string
        const std::size_t at = s.find("'<");
        if (at == std::string::npos) break;
        const std::size_t end = s.find('\'', at + 1);
        if (end == std::string::npos) break;
        s.replace(edit_at_ = at + 1, end - at - 1, pick(kDescrs));
        break;
      }
      case 7: {  // a wrong header length, in either the u16 or the u32 field
        if (s.size() < 12) break;
        static constexpr std::array<std::uint32_t, 6> kLengths = {0,       1,          0xffff,
                                                                  0x10000, 0xffffffff, 0x7fffffff};
        const std::uint32_t len =
            below(2) ? pick(kLengths) : static_cast<std::uint32_t>(below(400));
        const std::size_t width = below(2) ? 2 : 4;
        for (std::size_t i = 0; i < width; ++i)
          s[8 + i] = static_cast<char>((len >> (8 * i)) & 0xff);
        break;
      }
      case 8: {  // duplicate a slice of the file elsewhere (repeats keys, values, tuples)
        if (s.empty()) break;
        const std::size_t from = position(s);
        const std::string slice = s.substr(from, 1 + below(32));
        edit_at_ = position(s, true);
        s.insert(edit_at_, slice);
        break;
      }
      case 9: {  // flip the order flag
        const std::size_t at = s.find("False");
        if (at != std::string::npos) s.replace(edit_at_ = at, 5, below(2) ? "True" : "false");
        break;
      }
      case 10:  // another format version
        if (s.size() >= 8) {
          s[6] = static_cast<char>(below(5));
          s[7] = static_cast<char>(below(4) == 0 ? 1 : 0);
        }
        break;
      case 11:  // append trailing bytes
        s.append(1 + below(16), static_cast<char>(below(256)));
        break;
      case 12: {  // whitespace inside the header, often still valid
        static constexpr std::array<std::string_view, 4> kSpace = {" ", "\n", "\t", "  "};
        if (s.size() > 10)
          s.insert(edit_at_ = 10 + below(std::min<std::size_t>(s.size(), 140) - 10), pick(kSpace));
        break;
      }
      default:  // change the data near the end of the file, which must stay valid
        if (!s.empty()) s[s.size() - 1 - below(std::min<std::size_t>(s.size(), 48))] ^= 0x5a;
        break;
    }
  }

  void fix_header_length(std::string& s, std::size_t before) const {
    if (s.size() < 12 || s.compare(0, 6, "\x93NUMPY") != 0 || s[6] < 1 || s[6] > 3) return;
    const std::size_t width = s[6] == 1 ? 2 : 4;
    std::uint64_t len = 0;
    for (std::size_t i = width; i-- > 0;) len = (len << 8) | static_cast<unsigned char>(s[8 + i]);
    const std::size_t begin = 8 + width;
    if (edit_at_ < begin || edit_at_ >= begin + len) return;
    len += s.size();
    len -= before;
    if (len >> (8 * width)) return;  // the field cannot hold it
    for (std::size_t i = 0; i < width; ++i) s[8 + i] = static_cast<char>((len >> (8 * i)) & 0xff);
  }

  std::mt19937_64 rng_;
  std::size_t edit_at_ = std::string::npos;  // where the last edit changed the length
};

std::string hex(std::string_view bytes) {
  static const char* const kHex = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes.size() && i < 256; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

// Kinds of rejection a good fuzzer must reach; counted so that a mutator that stops reaching
// part of the parser makes the test fail instead of quietly testing less.
constexpr std::array<std::string_view, 15> kErrorKinds = {"bad magic",
                                                          "format version",
                                                          "truncated .npy header",
                                                          "runs past the end",
                                                          "malformed .npy header",
                                                          "lacks the key",
                                                          "duplicate key",
                                                          "big-endian",
                                                          "Fortran-order",
                                                          "unsupported dtype",
                                                          "negative dimension",
                                                          "larger than the int64 maximum",
                                                          "more elements than fit",
                                                          "data is truncated",
                                                          "trailing bytes"};

TEST(NpyFuzz, EveryMutationParsesOrRaisesLighthouseError) {
  const std::vector<std::string> corpus = seed_corpus();
  const long n = iterations();
  Mutator mutator(kSeed);
  std::mt19937_64 choose(kSeed + 1);
  const std::string dir = std::filesystem::temp_directory_path().string();
  const std::string file = dir + "/lighthouse_npy_fuzz_" + std::to_string(::getpid()) + ".npy";

  long parsed = 0, rejected = 0, file_checks = 0;
  std::map<std::string_view, long> kinds;
  for (long it = 0; it < n; ++it) {
    const std::string input = mutator.mutate(corpus[choose() % corpus.size()]);
    std::string outcome;  // "ok" or the error message, to compare with read_npy
    try {
      const NpyArray a = parse_npy(input, file);
      ++parsed;
      outcome = "ok";
      ASSERT_GE(a.numel(), 0);
      ASSERT_EQ(a.bytes.size(), static_cast<std::size_t>(a.numel()) * dtype_size(a.dtype));
      const NpyArray b = parse_npy(serialize_npy(a.dtype, a.shape, a.bytes.data()));
      ASSERT_EQ(b.dtype, a.dtype);
      ASSERT_EQ(b.shape, a.shape);
      ASSERT_EQ(b.bytes, a.bytes);
    } catch (const Error& e) {
      ++rejected;
      outcome = e.what();
      ASSERT_EQ(outcome.rfind(file + ": ", 0), 0u) << outcome;
      // File bytes are never echoed raw: messages stay printable ASCII.
      for (const char c : outcome) {
        ASSERT_TRUE(c >= 0x20 && c < 0x7f) << "unprintable byte in: " << outcome;
      }
      for (const std::string_view kind : kErrorKinds) {
        if (outcome.find(kind) != std::string::npos) ++kinds[kind];
      }
    } catch (const std::exception& e) {
      FAIL() << "iteration " << it << ": unexpected exception " << e.what() << " for input "
             << hex(input);
    } catch (...) {
      FAIL() << "iteration " << it << ": unexpected non-std exception for input " << hex(input);
    }

    // The file reader takes another path (header first, then data into place); it must reach
    // the same verdict with the same message.
    if (it % kFileCheckEvery == 0) {
      ++file_checks;
      std::ofstream(file, std::ios::binary | std::ios::trunc) << input;
      std::string from_file;
      try {
        read_npy(file);
        from_file = "ok";
      } catch (const Error& e) {
        from_file = e.what();
      }
      ASSERT_EQ(from_file, outcome) << "input " << hex(input);
    }
  }
  std::filesystem::remove(file);

  std::printf("[ npy fuzz ] %ld iterations: %ld parsed, %ld rejected, %ld read_npy cross-checks\n",
              n, parsed, rejected, file_checks);
  for (const std::string_view kind : kErrorKinds) {
    std::printf("[ npy fuzz ]   %8ld  %.*s\n", kinds[kind], static_cast<int>(kind.size()),
                kind.data());
  }
  RecordProperty("iterations", static_cast<int>(n));
  // Both outcomes must be common, and every kind of rejection must be reached.
  EXPECT_GT(parsed, n / 50);
  EXPECT_GT(rejected, n / 2);
  if (n >= kDefaultIterations) {
    for (const std::string_view kind : kErrorKinds) {
      EXPECT_GT(kinds[kind], 0) << "the mutations never produced a '" << kind << "' error";
    }
  }
}

}  // namespace
}  // namespace lighthouse
