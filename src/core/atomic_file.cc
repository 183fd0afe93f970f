#include "core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace outpost {
namespace {

[[noreturn]] void FailErrno(const std::string& what, const std::filesystem::path& path) {
  Fail(ErrorCode::kInternal, what + " " + path.string() + ": " + std::strerror(errno));
}

void WriteAll(int fd, std::string_view data, const std::filesystem::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      FailErrno("write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

void WriteFileAtomically(const std::filesystem::path& path, std::string_view contents,
                         unsigned mode) {
  std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  std::string tmpl = (dir / ("." + path.filename().string() + ".tmp.XXXXXX")).string();
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) FailErrno("create temporary for", path);
  try {
    WriteAll(fd, contents, tmpl);
    if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) FailErrno("chmod", tmpl);
    if (::fsync(fd) != 0) FailErrno("fsync", tmpl);
    if (::close(fd) != 0) {
      fd = -1;
      FailErrno("close", tmpl);
    }
    fd = -1;
    if (::rename(tmpl.c_str(), path.c_str()) != 0) FailErrno("rename onto", path);
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmpl.c_str());
    throw;
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd < 0) FailErrno("open directory", dir);
  int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) FailErrno("fsync directory", dir);
}

void RequirePrivateFile(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077)) {
    Fail(ErrorCode::kFailedPrecondition, path.string() + " is readable by others (mode " +
                                             std::to_string((st.st_mode >> 6) & 7) +
                                             std::to_string((st.st_mode >> 3) & 7) +
                                             std::to_string(st.st_mode & 7) + "); chmod 600 it");
  }
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    Fail(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kInternal,
         "cannot read " + path.string() + ": " + std::strerror(errno));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return std::move(ss).str();
}

}  // namespace outpost
