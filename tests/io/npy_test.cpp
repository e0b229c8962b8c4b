// .npy reading and writing: round trips, numpy's exact byte layout, one specific error per kind
// of malformed file, and write_npy's atomicity.
#include "lighthouse/npy.hpp"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "lighthouse/error.hpp"

namespace lighthouse {
namespace {

namespace fs = std::filesystem;

constexpr DType kDtypes[] = {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64};

// A fresh folder per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "lighthouse_npy_XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::set<std::string> entries() const {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(path_)) names.insert(e.path().filename().string());
    return names;
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Permission checks do not apply to root, which CI often is. Sets `dir`'s mode, then runs `body`,
// in a root process with the effective user "nobody" (65534), which root can switch back from.
// Returns false (the caller skips, and CI then fails) where the switch is refused.
template <typename Body>
bool as_unprivileged(const fs::path& dir, fs::perms mode, Body body) {
  fs::permissions(dir, mode);
  if (::geteuid() != 0) {
    body();
    return true;
  }
  if (::seteuid(65534) != 0) return false;
  body();
  return ::seteuid(0) == 0;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

// Bytes of `n` distinct elements of `dtype` (negative values and fractions included).
std::vector<unsigned char> pattern(DType dtype, std::int64_t n) {
  std::vector<unsigned char> bytes(static_cast<std::size_t>(n) * dtype_size(dtype));
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = (static_cast<double>(i) - 3.0) * 1.25;
    unsigned char* p = bytes.data() + i * static_cast<std::int64_t>(dtype_size(dtype));
    switch (dtype) {
      case DType::kFloat32: {
        const float f = static_cast<float>(v);
        std::memcpy(p, &f, 4);
        break;
      }
      case DType::kFloat64:
        std::memcpy(p, &v, 8);
        break;
      case DType::kInt32: {
        const std::int32_t x = static_cast<std::int32_t>(i * 7 - 100000);
        std::memcpy(p, &x, 4);
        break;
      }
      default: {
        const std::int64_t x = i * 3 - (std::int64_t{1} << 40);
        std::memcpy(p, &x, 8);
        break;
      }
    }
  }
  return bytes;
}

std::int64_t product(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (const auto d : shape) n *= d;
  return n;
}

// A .npy file with a hand-written header dict; the preamble is filled in for `major`.
std::string npy_file(const std::string& dict, const std::string& data = "", int major = 1) {
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += '\0';
  const std::size_t len = dict.size();
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>((len >> 8) & 0xff);
  if (major != 1) {
    out += static_cast<char>((len >> 16) & 0xff);
    out += static_cast<char>((len >> 24) & 0xff);
  }
  return out + dict + data;
}

std::string dict_for(const std::string& descr, const std::string& shape,
                     const std::string& fortran = "False") {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }\n";
}

// parse_npy must throw lighthouse::Error naming the file and containing every fragment.
void expect_rejected(const std::string& contents, const std::vector<std::string>& fragments) {
  try {
    parse_npy(contents, "bad.npy");
    ADD_FAILURE() << "accepted a malformed file; expected an error containing '" << fragments[0]
                  << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("bad.npy: ", 0), 0u) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << msg;
  }
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// ---- round trips -----------------------------------------------------------------------------

TEST(Npy, RoundTripsEveryDtypeAndShapeInMemoryAndOnDisk) {
  const std::vector<std::vector<std::int64_t>> shapes = {
      {}, {0}, {1}, {5}, {2, 3}, {3, 1}, {2, 0, 4}, {1, 2, 3, 4}, {0, 0}, {7, 1, 1, 2, 1}};
  TempDir dir;
  for (const DType dtype : kDtypes) {
    for (const auto& shape : shapes) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " rank " + std::to_string(shape.size()));
      const auto data = pattern(dtype, product(shape));
      const std::string bytes = serialize_npy(dtype, shape, data.data());
      // numpy's layout: version 1.0, data at a multiple of 64, header ending in '\n'.
      const std::size_t offset = bytes.size() - data.size();
      EXPECT_EQ(offset % 64, 0u);
      EXPECT_EQ(bytes[6], 1);
      EXPECT_EQ(bytes[offset - 1], '\n');

      const NpyArray parsed = parse_npy(bytes);
      EXPECT_EQ(parsed.dtype, dtype);
      EXPECT_EQ(parsed.shape, shape);
      EXPECT_EQ(parsed.numel(), product(shape));
      EXPECT_EQ(parsed.bytes, data);

      const std::string path = dir.file("a.npy");
      write_npy(path, dtype, shape, data.data());
      EXPECT_EQ(slurp(path), bytes);
      const NpyArray read = read_npy(path);
      EXPECT_EQ(read.dtype, dtype);
      EXPECT_EQ(read.shape, shape);
      EXPECT_EQ(read.bytes, data);
    }
  }
}

TEST(Npy, TypedDataAccessorsSeeTheValues) {
  const std::vector<double> values = {1.5, -2.25, 1e300};
  const NpyArray a = parse_npy(serialize_npy(DType::kFloat64, {3}, values.data()));
  ASSERT_EQ(a.numel(), 3);
  EXPECT_EQ(a.data<double>()[0], 1.5);
  EXPECT_EQ(a.data<double>()[1], -2.25);
  EXPECT_EQ(a.data<double>()[2], 1e300);
  EXPECT_EQ(NpyArray{}.numel(), 1);  // a scalar has one element
}

// ---- numpy's exact bytes (written by numpy 2.4 with np.save, transcribed by hand) -------------

TEST(Npy, SerializesExactlyLikeNumpy2x3Float32) {
  // np.save(f, (np.arange(6, dtype='<f4') + 0.5).reshape(2, 3))
  const std::string expected = std::string("\x93NUMPY\x01\x00\x76\x00", 10) +
                               "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" +
                               std::string(20 + 38, ' ') +  // numpy's growth room + alignment
                               "\n" +
                               std::string(
                                   "\x00\x00\x00\x3f\x00\x00\xc0\x3f\x00\x00\x20\x40"
                                   "\x00\x00\x60\x40\x00\x00\x90\x40\x00\x00\xb0\x40",
                                   24);
  ASSERT_EQ(expected.size(), 128u + 24u);
  const std::vector<float> values = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f};
  EXPECT_EQ(serialize_npy(DType::kFloat32, {2, 3}, values.data()), expected);
  const NpyArray a = parse_npy(expected);
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(a.data<float>()[5], 5.5f);
}

TEST(Npy, SerializesExactlyLikeNumpyScalarInt32) {
  // np.save(f, np.array(-7, dtype='<i4')): '()' shape, no growth room for a 0-d array.
  const std::string expected = std::string("\x93NUMPY\x01\x00\x76\x00", 10) +
                               "{'descr': '<i4', 'fortran_order': False, 'shape': (), }" +
                               std::string(62, ' ') + "\n" + std::string("\xf9\xff\xff\xff", 4);
  const std::int32_t value = -7;
  EXPECT_EQ(serialize_npy(DType::kInt32, {}, &value), expected);
  const NpyArray a = parse_npy(expected);
  EXPECT_TRUE(a.shape.empty());
  EXPECT_EQ(a.data<std::int32_t>()[0], -7);
}

TEST(Npy, SerializesExactlyLikeNumpyIncludingGrowthRoom) {
  // np.save(f, np.zeros((0,) + (100,) * 9, '<i8')): numpy's 20 spaces of room for shape[0] to
  // grow push this header into a third 64-byte block (without them it would end at byte 128).
  const std::vector<std::int64_t> shape = {0, 100, 100, 100, 100, 100, 100, 100, 100, 100};
  const std::string expected =
      std::string("\x93NUMPY\x01\x00\xb6\x00", 10) +
      "{'descr': '<i8', 'fortran_order': False, 'shape': (0, 100, 100, 100, 100, 100, 100, 100, "
      "100, 100), }" +
      std::string(20 + 60, ' ') + "\n";
  ASSERT_EQ(expected.size(), 192u);
  EXPECT_EQ(serialize_npy(DType::kInt64, shape, nullptr), expected);
  EXPECT_EQ(parse_npy(expected).shape, shape);
}

TEST(Npy, ShapeTuplesAreFormattedLikePython) {
  const double x[5] = {};
  EXPECT_NE(serialize_npy(DType::kFloat64, {5}, x).find("'shape': (5,), }"), std::string::npos);
  EXPECT_NE(serialize_npy(DType::kFloat64, {0}, x).find("'shape': (0,), }"), std::string::npos);
  EXPECT_NE(serialize_npy(DType::kFloat64, {1, 0, 1}, x).find("'shape': (1, 0, 1), }"),
            std::string::npos);
}

TEST(Npy, ReadsVersion2And3Headers) {
  // np.lib.format.write_array(f, np.arange(5, dtype='<f8'), version=(3, 0)): a u32 length.
  const std::vector<double> values = {0, 1, 2, 3, 4};
  const std::string data(reinterpret_cast<const char*>(values.data()), 40);
  for (const int major : {2, 3}) {
    const std::string file = std::string("\x93NUMPY", 6) + static_cast<char>(major) +
                             std::string("\x00\x74\x00\x00\x00", 5) +
                             "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }" +
                             std::string(58, ' ') + "\n" + data;
    ASSERT_EQ(file.size(), 128u + 40u);
    const NpyArray a = parse_npy(file);
    EXPECT_EQ(a.dtype, DType::kFloat64);
    EXPECT_EQ(a.shape, std::vector<std::int64_t>{5});
    EXPECT_EQ(a.data<double>()[4], 4.0);
  }
}

TEST(Npy, AcceptsAnyValidDictSpelling) {
  const std::string data(24, '\0');
  const std::vector<std::string> dicts = {
      "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",
      "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,3)}",
      "  {  'descr'  :'<f4' ,'fortran_order':False,\n 'shape':( 2 , 3 , ) , }  \n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }",  // Python 2 longs
      "{'descr':'<f4','fortran_order':False,'shape':(2,3)}",            // no padding at all
  };
  for (const auto& dict : dicts) {
    SCOPED_TRACE(dict);
    for (const int major : {1, 2, 3}) {
      const NpyArray a = parse_npy(npy_file(dict, data, major));
      EXPECT_EQ(a.dtype, DType::kFloat32);
      EXPECT_EQ(a.shape, (std::vector<std::int64_t>{2, 3}));
    }
  }
  // 1-d and 0-d tuples, and a zero dimension beside a huge one (an empty array).
  EXPECT_EQ(parse_npy(npy_file(dict_for("<i8", "(3,)"), std::string(24, '\0'))).shape,
            std::vector<std::int64_t>{3});
  EXPECT_TRUE(parse_npy(npy_file(dict_for("<i8", "()"), std::string(8, '\0'))).shape.empty());
  const NpyArray empty =
      parse_npy(npy_file(dict_for("<i4", "(4294967296, 9223372036854775807, 0)")));
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_TRUE(empty.bytes.empty());
}

TEST(Npy, FallsBackToVersion2WhenTheHeaderOutgrowsVersion1) {
  // Like numpy: a header longer than 65535 bytes needs version 2.0's u32 length.
  const std::vector<std::int64_t> shape(30000, 1);
  const float x = 3.0f;
  const std::string bytes = serialize_npy(DType::kFloat32, shape, &x);
  EXPECT_EQ(bytes[6], 2);
  EXPECT_EQ((bytes.size() - 4) % 64, 0u);
  const NpyArray a = parse_npy(bytes);
  EXPECT_EQ(a.shape, shape);
  EXPECT_EQ(a.data<float>()[0], 3.0f);
}

// ---- malformed files: one specific message each ----------------------------------------------

TEST(NpyErrors, BadMagic) {
  expect_rejected("PK\x03\x04 this is a zip file", {"not a .npy file: bad magic", "'PK\\x03\\x04"});
  expect_rejected(std::string("\x93NUMPX\x01\x00", 8), {"bad magic"});
}

TEST(NpyErrors, TruncatedPreamble) {
  expect_rejected("", {"truncated .npy header", "only 0 bytes"});
  expect_rejected("\x93NUM", {"truncated .npy header", "only 4 bytes"});
  expect_rejected("\x93NUMPY", {"truncated .npy header", "before the format version"});
  expect_rejected(std::string("\x93NUMPY\x01\x00\x10", 9), {"inside the 10-byte preamble"});
  expect_rejected(std::string("\x93NUMPY\x02\x00\x10\x00\x00", 11),
                  {"inside the 12-byte preamble"});
}

TEST(NpyErrors, UnsupportedVersion) {
  for (const auto& [major, minor, text] :
       {std::tuple{4, 0, "4.0"}, std::tuple{1, 1, "1.1"}, std::tuple{0, 0, "0.0"}}) {
    std::string file = npy_file(dict_for("<f4", "()"), std::string(4, '\0'));
    file[6] = static_cast<char>(major);
    file[7] = static_cast<char>(minor);
    expect_rejected(
        file, {std::string("unsupported .npy format version ") + text, "supported: 1.0, 2.0, 3.0"});
  }
}

TEST(NpyErrors, HeaderLengthPastEndOfFile) {
  std::string file = npy_file(dict_for("<f4", "(2,)"), std::string(8, '\0'));
  file[8] = '\xff';
  file[9] = '\x7f';  // 32767 header bytes in a file of under 100
  expect_rejected(file, {"header length 32767 runs past the end of the file",
                         "the file has " + std::to_string(file.size()) + " bytes"});
  // Version 2.0's u32 length near 4 GiB must not be trusted either.
  std::string v2 = npy_file(dict_for("<f4", "(2,)"), std::string(8, '\0'), 2);
  v2[8] = v2[9] = v2[10] = v2[11] = '\xff';
  expect_rejected(v2, {"header length 4294967295 runs past the end of the file"});
}

TEST(NpyErrors, MalformedDict) {
  const std::string d4(4, '\0');
  expect_rejected(npy_file(""), {"malformed .npy header", "expected a dict literal"});
  expect_rejected(npy_file("'descr': '<f4'"), {"malformed .npy header", "expected a dict"});
  expect_rejected(npy_file("{'descr' '<f4', 'fortran_order': False, 'shape': ()}", d4),
                  {"expected ':' after key 'descr'", "at character 9"});
  expect_rejected(npy_file("{'descr': '<f4, 'fortran_order': False, 'shape': ()}", d4),
                  {"malformed .npy header"});
  expect_rejected(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': ()", d4),
                  {"expected ',' or '}' after the value of 'shape'"});
  expect_rejected(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': ()} x", d4),
                  {"unexpected text after the closing '}'"});
  expect_rejected(npy_file("{'descr': '<f4', 'fortran_order': false, 'shape': ()}", d4),
                  {"expected True or False as the value of 'fortran_order'"});
  expect_rejected(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (5)}", d4),
                  {"not a tuple", "(5,)"});
  expect_rejected(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,)}", d4),
                  {"expected ',' or ')' in 'shape'"});
  expect_rejected(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", d4),
                  {"expected a tuple such as (5,)"});
  expect_rejected(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (,)}", d4),
                  {"expected an integer in 'shape'"});
  expect_rejected(npy_file("{'descr': '<f\\x34', 'fortran_order': False, 'shape': ()}", d4),
                  {"escape sequences"});
  expect_rejected(npy_file("{'descr': '<f4',, 'fortran_order': False, 'shape': ()}", d4),
                  {"expected a quoted key"});
  // Binary junk is shown escaped, never raw.
  expect_rejected(npy_file(std::string("{\x01\xff}", 4)), {"'{\\x01\\xff}'"});
}

TEST(NpyErrors, MissingDuplicateAndUnknownKeys) {
  const std::string d4(4, '\0');
  expect_rejected(npy_file("{'descr': '<f4', 'fortran_order': False}", d4),
                  {"lacks the key(s) 'shape'"});
  expect_rejected(npy_file("{}"), {"lacks the key(s) 'descr', 'fortran_order', 'shape'"});
  expect_rejected(
      npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'descr': '<f8'}", d4),
      {"duplicate key 'descr'"});
  expect_rejected(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}", d4),
                  {"unexpected key 'x'"});
}

TEST(NpyErrors, BigEndianNamesTheConversion) {
  expect_rejected(npy_file(dict_for(">f4", "(1,)"), std::string(4, '\0')),
                  {"big-endian data is not supported; convert with arr.astype('<f4')"});
  expect_rejected(npy_file(dict_for(">i8", "(1,)"), std::string(8, '\0')),
                  {"big-endian data is not supported; convert with arr.astype('<i8')"});
}

TEST(NpyErrors, FortranOrder) {
  expect_rejected(npy_file(dict_for("<f4", "(2, 3)", "True"), std::string(24, '\0')),
                  {"Fortran-order arrays are not supported; use np.ascontiguousarray"});
}

TEST(NpyErrors, UnsupportedDtypeNamesItAndTheSupportedOnes) {
  for (const std::string descr : {"<f2", "|f4", "=f4", "<u4", "|u1", "|b1", "<c8", "<U5", ">u2"}) {
    expect_rejected(npy_file(dict_for(descr, "(1,)"), std::string(8, '\0')),
                    {"unsupported dtype '" + descr + "'",
                     "supported: '<f4' (float32), '<f8' (float64), '<i4' (int32), '<i8' (int64)"});
  }
  expect_rejected(npy_file("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}"),
                  {"structured dtypes"});
}

TEST(NpyErrors, NegativeAndHugeDimensions) {
  expect_rejected(npy_file(dict_for("<f4", "(2, -3)")),
                  {"'shape' '(2, -3)' has a negative dimension '-3'"});
  expect_rejected(npy_file(dict_for("<f4", "(99999999999999999999,)")),
                  {"dimension '99999999999999999999' larger than the int64 maximum"});
  expect_rejected(npy_file(dict_for("<f4", "(9223372036854775808,)")),
                  {"larger than the int64 maximum"});
  expect_rejected(npy_file(dict_for("<f4", "(4294967296, 4294967296)")),
                  {"'shape' '(4294967296, 4294967296)' has more elements than fit in int64"});
  expect_rejected(npy_file(dict_for("<f8", "(2305843009213693952,)")),  // 2^61 * 8 bytes
                  {"needs more bytes than fit in int64"});
}

TEST(NpyErrors, DataShorterOrLongerThanTheShape) {
  expect_rejected(
      npy_file(dict_for("<f4", "(2, 3)"), std::string(20, '\0')),
      {"data is truncated", "'(2, 3)' of dtype '<f4' needs 24 data bytes", "only 20 are present"});
  expect_rejected(npy_file(dict_for("<f4", "(2, 3)"), std::string(28, '\0')),
                  {"4 trailing bytes after the data", "needs 24 data bytes"});
  // A huge declared size is refused before anything is allocated.
  expect_rejected(npy_file(dict_for("<f8", "(1000000000000, 1000)"), std::string(16, '\0')),
                  {"data is truncated", "needs 8000000000000000 data bytes"});
}

// ---- read_npy --------------------------------------------------------------------------------

TEST(NpyFiles, ReadErrorsNameThePathAndTheReason) {
  TempDir dir;
  const std::string missing = dir.file("missing.npy");
  EXPECT_EQ(error_of([&] { read_npy(missing); }),
            missing + ": cannot open .npy file: No such file or directory");
  const std::string folder = dir.file("folder.npy");
  fs::create_directory(folder);
  EXPECT_EQ(error_of([&] { read_npy(folder); }),
            folder + ": cannot read .npy file: Is a directory");
  const std::string bad = dir.file("bad.npy");
  spit(bad, npy_file(dict_for(">f4", "()"), std::string(4, '\0')));
  EXPECT_EQ(error_of([&] { read_npy(bad); }),
            bad + ": big-endian data is not supported; convert with arr.astype('<f4')");
  spit(bad, npy_file(dict_for("<f4", "(1000000000000,)"), std::string(4, '\0')));
  EXPECT_NE(error_of([&] { read_npy(bad); }).find(bad + ": data is truncated"), std::string::npos);
  EXPECT_EQ(error_of([&] { read_npy("/dev/null"); }),
            "/dev/null: cannot read .npy file: not a regular file");
}

TEST(NpyFiles, UnreadableFile) {
  TempDir dir;
  const std::string path = dir.file("secret.npy");
  const float x = 1;
  write_npy(path, DType::kFloat32, {}, &x);
  ::chmod(path.c_str(), 0);
  std::string msg;
  // 0755: mkdtemp's 0700 would stop nobody at the folder, not at the file.
  const fs::perms open_dir = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                             fs::perms::others_read | fs::perms::others_exec;
  if (!as_unprivileged(dir.path(), open_dir, [&] { msg = error_of([&] { read_npy(path); }); })) {
    GTEST_SKIP() << "running as root and seteuid(nobody) was refused: permissions cannot fail";
  }
  EXPECT_EQ(msg, path + ": cannot open .npy file: Permission denied");
}

// ---- write_npy -------------------------------------------------------------------------------

TEST(NpyFiles, WriteLeavesOnlyTheTargetAndReplacesAnOldFile) {
  TempDir dir;
  const std::string path = dir.file("out.npy");
  const std::vector<std::int64_t> big = {1, 2, 3, 4, 5, 6};
  const std::vector<std::int64_t> small = {9};
  write_npy(path, DType::kInt64, {6}, big.data());
  write_npy(path, DType::kInt64, {1}, small.data());
  EXPECT_EQ(dir.entries(), std::set<std::string>{"out.npy"});
  const NpyArray a = read_npy(path);
  EXPECT_EQ(a.shape, std::vector<std::int64_t>{1});
  EXPECT_EQ(a.data<std::int64_t>()[0], 9);
}

TEST(NpyFiles, WritesAFileWhoseNameIsNearTheLengthLimit) {
  // The temporary name adds a prefix and suffix; it must still fit in NAME_MAX.
  TempDir dir;
  const std::string name = std::string(246, 'n') + ".npy";
  const std::int32_t x = 5;
  write_npy(dir.file(name), DType::kInt32, {}, &x);
  EXPECT_EQ(dir.entries(), std::set<std::string>{name});
  EXPECT_EQ(read_npy(dir.file(name)).data<std::int32_t>()[0], 5);
}

TEST(NpyFiles, NewFilesGetTheUsualPermissions) {
  // A temp file from mkstemp would be 0600; the result must look like any other new file.
  TempDir dir;
  const mode_t old = ::umask(022);
  const float x = 1;
  write_npy(dir.file("p.npy"), DType::kFloat32, {}, &x);
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(dir.file("p.npy").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

TEST(NpyFiles, WriteIntoAMissingFolderFailsNamingThePath) {
  TempDir dir;
  const std::string path = dir.file("no/such/dir/out.npy");
  const float x = 1;
  const std::string msg = error_of([&] { write_npy(path, DType::kFloat32, {}, &x); });
  EXPECT_EQ(msg.rfind(path + ": cannot write .npy file", 0), 0u) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  EXPECT_TRUE(dir.entries().empty());
}

TEST(NpyFiles, FailedRenameRemovesTheTempFileAndKeepsTheTarget) {
  // The target is a non-empty folder: everything succeeds up to the rename, which fails.
  TempDir dir;
  const std::string path = dir.file("target.npy");
  fs::create_directory(path);
  spit(path + "/keep", "x");
  const float x = 1;
  const std::string msg = error_of([&] { write_npy(path, DType::kFloat32, {}, &x); });
  EXPECT_EQ(msg.rfind(path + ": cannot write .npy file: renaming", 0), 0u) << msg;
  EXPECT_EQ(dir.entries(), std::set<std::string>{"target.npy"});
  EXPECT_EQ(slurp(path + "/keep"), "x");
}

TEST(NpyFiles, FailedWriteDoesNotClobberAGoodFile) {
  // A file-size limit makes write() fail part-way (EFBIG) without needing a full disk.
  TempDir dir;
  const std::string path = dir.file("good.npy");
  const std::vector<double> good = {1, 2, 3};
  write_npy(path, DType::kFloat64, {3}, good.data());
  const std::string before = slurp(path);

  const std::vector<double> large(1 << 16, 7.0);  // 512 KiB, over the 64 KiB limit
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit limited = old;
  limited.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  const std::string msg =
      error_of([&] { write_npy(path, DType::kFloat64, {1 << 16}, large.data()); });
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);

  EXPECT_EQ(msg.rfind(path + ": cannot write .npy file: writing", 0), 0u) << msg;
  EXPECT_NE(msg.find(std::strerror(EFBIG)), std::string::npos) << msg;
  EXPECT_EQ(slurp(path), before);
  EXPECT_EQ(dir.entries(), std::set<std::string>{"good.npy"});
}

TEST(NpyFiles, ReadOnlyFolderFailsCleanly) {
  TempDir dir;
  const std::string path = dir.file("good.npy");
  const float x = 1;
  write_npy(path, DType::kFloat32, {}, &x);
  const std::string before = slurp(path);
  std::string msg;
  const fs::perms read_only = fs::perms::owner_read | fs::perms::owner_exec |
                              fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec;  // 0555
  const bool ran = as_unprivileged(dir.path(), read_only, [&] {
    msg = error_of([&] { write_npy(path, DType::kFloat32, {}, &x); });
  });
  ::chmod(dir.path().c_str(), 0755);
  if (!ran) GTEST_SKIP() << "running as root and seteuid(nobody) was refused";
  EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
  EXPECT_EQ(slurp(path), before);
  EXPECT_EQ(dir.entries(), std::set<std::string>{"good.npy"});
}

TEST(NpyFiles, InvalidArgumentsCreateNothing) {
  TempDir dir;
  const std::string path = dir.file("x.npy");
  const float x = 1;
  EXPECT_THROW(write_npy(path, DType::kBFloat16, {1}, &x), InvalidArgument);
  EXPECT_THROW(write_npy(path, DType::kFloat32, {2, -1}, &x), InvalidArgument);
  EXPECT_THROW(write_npy(path, DType::kFloat32, {2}, nullptr), InvalidArgument);
  EXPECT_THROW(write_npy(path, DType::kFloat32, {1 << 30, 1 << 30, 1 << 30}, &x), InvalidArgument);
  EXPECT_THROW(serialize_npy(DType::kFloat16, {1}, &x), InvalidArgument);
  EXPECT_TRUE(dir.entries().empty());
  // An empty array needs no data pointer.
  write_npy(path, DType::kFloat32, {std::int64_t{1} << 40, std::int64_t{1} << 40, 0}, nullptr);
  EXPECT_EQ(read_npy(path).numel(), 0);
}

}  // namespace
}  // namespace lighthouse
