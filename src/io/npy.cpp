// .npy in memory and on disk. The header grammar and numpy's layout rules live in
// npy_header.cpp; this file moves bytes and makes writes atomic.
#include "lighthouse/npy.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <random>

#include "io/npy_header.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse {

// Array bytes are copied verbatim between files (little-endian) and memory.
static_assert(std::endian::native == std::endian::little,
              ".npy I/O assumes a little-endian host; add byte swapping for this target");

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what, int err) {
  throw Error(path + ": " + what + ": " + std::strerror(err));
}

// Closes a file descriptor on every path out of a scope.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now and reports close's error, which can be the first sign of a failed write.
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// Reads exactly `n` bytes at `offset`; a short read means the file shrank after fstat.
void read_exact(int fd, void* buf, std::uint64_t n, std::uint64_t offset, const std::string& path) {
  auto* p = static_cast<unsigned char*>(buf);
  while (n > 0) {
    const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(n, 1u << 30));
    const ssize_t got = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      fail(path, "cannot read", errno);
    }
    if (got == 0) throw Error(path + ": the file shrank while it was being read");
    p += got;
    n -= static_cast<std::uint64_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
}

// Writes all `n` bytes, retrying short writes; returns errno on failure, 0 on success.
int write_all(int fd, const void* buf, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(buf);
  while (n > 0) {
    const ssize_t put = ::write(fd, p, std::min<std::size_t>(n, 1u << 30));
    if (put < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += put;
    n -= static_cast<std::size_t>(put);
  }
  return 0;
}

std::uint64_t checked_nbytes(DType dtype, const std::vector<std::int64_t>& shape) {
  const std::size_t itemsize = npy::itemsize_of(dtype);  // refuses unsupported dtypes
  std::int64_t n = static_cast<std::int64_t>(itemsize);
  for (const std::int64_t d : shape) {
    if (d < 0) throw InvalidArgument("shape", npy::shape_repr(shape), "dimensions must be >= 0");
  }
  // As on reading: a zero dimension makes the array empty whatever the others are.
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  for (const std::int64_t d : shape) {
    if (__builtin_mul_overflow(n, d, &n)) {
      throw InvalidArgument("shape", npy::shape_repr(shape), "its size in bytes must fit in int64");
    }
  }
  return static_cast<std::uint64_t>(n);
}

// A name no other writer uses, in the destination's folder so that rename() stays atomic (it
// cannot cross file systems), hidden so that a crash leaves no plausible-looking .npy behind.
std::string temp_path_for(const std::string& path, unsigned attempt) {
  static std::atomic<std::uint64_t> counter{0};
  static const std::uint64_t salt = std::random_device{}();
  const std::size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  // Cut the file name so that the temporary name stays within NAME_MAX (255).
  const std::string base =
      (slash == std::string::npos ? path : path.substr(slash + 1)).substr(0, 160);
  return dir + "." + base + ".tmp-" + std::to_string(::getpid()) + "-" +
         std::to_string(salt ^ counter.fetch_add(1)) + "-" + std::to_string(attempt);
}

}  // namespace

std::int64_t NpyArray::numel() const {
  // A zero dimension first: the reader accepts (huge, huge, 0), whose running product of the
  // nonzero dimensions alone would overflow.
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  std::int64_t n = 1;
  for (const std::int64_t d : shape) n *= d;
  return n;
}

NpyArray parse_npy(std::string_view contents, const std::string& name) {
  const npy::Preamble pre =
      npy::read_preamble(contents.substr(0, npy::kMaxPreamble), contents.size(), name);
  const std::string_view text =
      contents.substr(pre.header_begin, pre.header_end - pre.header_begin);
  npy::Layout layout = npy::parse_header(text, contents.size() - pre.header_end, name);
  NpyArray array;
  array.dtype = layout.dtype;
  array.shape = std::move(layout.shape);
  const std::string_view data = contents.substr(pre.header_end);
  array.bytes.assign(data.begin(), data.end());
  return array;
}

NpyArray read_npy(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail(path, "cannot open .npy file", errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail(path, "cannot stat .npy file", errno);
  if (S_ISDIR(st.st_mode)) fail(path, "cannot read .npy file", EISDIR);
  // Sizes are checked against st_size before anything is allocated, so a pipe or device
  // (whose size is unknown) is refused rather than read without bound.
  if (!S_ISREG(st.st_mode)) throw Error(path + ": cannot read .npy file: not a regular file");
  const auto file_size = static_cast<std::uint64_t>(st.st_size);

  std::string head(std::min<std::uint64_t>(file_size, npy::kMaxPreamble), '\0');
  read_exact(fd.get(), head.data(), head.size(), 0, path);
  const npy::Preamble pre = npy::read_preamble(head, file_size, path);
  std::string text(pre.header_end - pre.header_begin, '\0');
  read_exact(fd.get(), text.data(), text.size(), pre.header_begin, path);
  npy::Layout layout = npy::parse_header(text, file_size - pre.header_end, path);

  NpyArray array;
  array.dtype = layout.dtype;
  array.shape = std::move(layout.shape);
  array.bytes.resize(layout.data_bytes);  // == the bytes the file holds after the header
  read_exact(fd.get(), array.bytes.data(), array.bytes.size(), pre.header_end, path);
  return array;
}

std::string serialize_npy(DType dtype, const std::vector<std::int64_t>& shape, const void* data) {
  const std::uint64_t nbytes = checked_nbytes(dtype, shape);
  if (nbytes > 0 && data == nullptr) {
    throw InvalidArgument("data", "nullptr", "must point to the array's bytes");
  }
  std::string out = npy::format_header(dtype, shape);
  out.append(static_cast<const char*>(data), nbytes);
  return out;
}

void write_npy(const std::string& path, DType dtype, const std::vector<std::int64_t>& shape,
               const void* data) {
  const std::uint64_t nbytes = checked_nbytes(dtype, shape);
  if (nbytes > 0 && data == nullptr) {
    throw InvalidArgument("data", "nullptr", "must point to the array's bytes");
  }
  const std::string header = npy::format_header(dtype, shape);

  // O_EXCL makes the name ours alone; 0666 lets the umask decide the final permissions, as
  // for any newly created file.
  std::string tmp;
  int raw_fd = -1;
  for (unsigned attempt = 0; raw_fd < 0; ++attempt) {
    tmp = temp_path_for(path, attempt);
    raw_fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (raw_fd < 0 && (errno != EEXIST || attempt >= 100)) {
      fail(path, "cannot write .npy file: cannot create temporary file '" + tmp + "'", errno);
    }
  }
  Fd fd(raw_fd);
  auto give_up = [&](const std::string& what, int err) {
    if (fd.get() >= 0) fd.close();
    ::unlink(tmp.c_str());
    fail(path, "cannot write .npy file: " + what, err);
  };
  if (const int err = write_all(fd.get(), header.data(), header.size())) {
    give_up("writing '" + tmp + "' failed", err);
  }
  if (const int err = write_all(fd.get(), data, nbytes))
    give_up("writing '" + tmp + "' failed", err);
  // The data must be on disk before the rename makes it visible under `path`; otherwise a
  // crash could leave an empty or partial file there.
  if (::fsync(fd.get()) != 0) give_up("fsync of '" + tmp + "' failed", errno);
  if (fd.close() != 0) give_up("closing '" + tmp + "' failed", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    give_up("renaming '" + tmp + "' over it failed", errno);
  }
  // Persist the rename itself. Best effort: the file is already complete under `path`, and a
  // folder that cannot be opened or synced (some file systems) is no reason to report failure.
  const std::size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace lighthouse
