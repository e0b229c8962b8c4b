#include "common/atomic_text.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/args.hpp"
#include "lighthouse/error.hpp"

namespace lighthouse::cli {

namespace fs = std::filesystem;

void write_text_atomically(const std::string& path, const std::string& contents) {
  const std::string temp = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(path + ": cannot create: " + std::strerror(errno));
  std::size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string reason = std::strerror(errno);
      ::close(fd);
      ::unlink(temp.c_str());
      throw Error(path + ": cannot write: " + reason);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(temp.c_str());
    throw Error(path + ": cannot flush: " + reason);
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(temp.c_str());
    throw Error(path + ": cannot rename the finished temporary file into place: " + reason);
  }
}

void check_writable_path(const std::string& flag, const std::string& path) {
  if (path.empty()) reject(flag, path, "must be a file name");
  std::error_code ec;
  if (fs::is_directory(path, ec)) reject(flag, path, "is a folder, not a file name");
  fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) parent = ".";
  if (!fs::is_directory(parent, ec)) {
    reject(flag, path, "its folder " + parent.string() + " does not exist");
  }
}

}  // namespace lighthouse::cli
