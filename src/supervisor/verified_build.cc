#include "supervisor/verified_build.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "package/sha256.h"

namespace outpost {
namespace fs = std::filesystem;
namespace {

constexpr size_t kChunk = 1u << 20;

[[noreturn]] void Failed(const std::string& what) {
  Fail(ErrorCode::kInternal, what + ": " + std::strerror(errno));
}

// Copies `from` to `to` (created, never followed through a symlink) and returns the SHA-256
// of the bytes written.
std::string CopyHashing(const fs::path& from, const fs::path& to, uint64_t expected_size,
                        mode_t mode) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (in < 0) Fail(ErrorCode::kPermissionDenied, "'" + from.string() + "' cannot be opened");
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (out < 0) {
    ::close(in);
    Failed("cannot create " + to.string());
  }
  Sha256 hash;
  std::string buf(kChunk, '\0');
  uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(in);
      ::close(out);
      Failed("cannot read " + from.string());
    }
    if (n == 0) break;
    total += static_cast<uint64_t>(n);
    if (total > expected_size) break;  // longer than signed: no need to copy the rest
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(out, buf.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        ::close(in);
        ::close(out);
        Failed("cannot write " + to.string());
      }
      done += w;
    }
    hash.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  ::close(in);
  ::fchmod(out, mode);
  ::close(out);
  if (total != expected_size)
    Fail(ErrorCode::kPermissionDenied,
         "'" + from.string() + "' is not the size the signed manifest says");
  return hash.HexDigest();
}

}  // namespace

VerifiedBuild::VerifiedBuild(const fs::path& version_dir, const PackageManifest& manifest,
                             const fs::path& run_root) {
  std::error_code ec;
  fs::create_directories(run_root, ec);
  // Others may pass through (an agent running as its own user loads its libraries from its
  // copy) but not list or write it.
  ::chmod(run_root.c_str(), 0711);
  std::string tmpl = (run_root / (manifest.version + "-XXXXXX")).string();
  if (!::mkdtemp(tmpl.data())) Failed("cannot make a directory in " + run_root.string());
  dir_ = tmpl;
  try {
    for (const auto& f : manifest.files) {
      const fs::path to = dir_ / f.path;
      fs::create_directories(to.parent_path());
      struct stat st {};
      const bool executable =
          ::lstat((version_dir / f.path).c_str(), &st) == 0 && (st.st_mode & 0100);
      if (CopyHashing(version_dir / f.path, to, f.size, executable ? 0555 : 0444) != f.sha256)
        Fail(ErrorCode::kPermissionDenied,
             "'" + f.path + "' does not match its sha256 in the signed manifest (changed on disk)");
    }
    // Read-only from the top: the copy cannot be added to, even by its owner, without a chmod.
    for (auto it = fs::recursive_directory_iterator(dir_); it != fs::recursive_directory_iterator();
         ++it)
      if (it->is_directory()) ::chmod(it->path().c_str(), 0555);
    ::chmod(dir_.c_str(), 0555);
    entry_ = dir_ / manifest.model_file;
    entry_fd_ = ::open(entry_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (entry_fd_ < 0) Failed("cannot open " + entry_.string());
    char magic[2] = {};
    script_ = ::pread(entry_fd_, magic, 2, 0) == 2 && magic[0] == '#' && magic[1] == '!';
  } catch (...) {
    Remove();
    throw;
  }
}

VerifiedBuild::~VerifiedBuild() { Remove(); }

void VerifiedBuild::Remove() {
  if (entry_fd_ >= 0) ::close(entry_fd_);
  entry_fd_ = -1;
  if (dir_.empty()) return;
  std::error_code ec;
  // Writable again first: remove_all needs to unlink entries of 0555 directories.
  for (auto it = fs::recursive_directory_iterator(dir_, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec))
    if (it->is_directory(ec)) ::chmod(it->path().c_str(), 0700);
  ::chmod(dir_.c_str(), 0700);
  fs::remove_all(dir_, ec);
  dir_.clear();
}

void RemoveStaleBuilds(const fs::path& run_root) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run_root, ec)) {
    std::error_code ec2;
    for (auto it = fs::recursive_directory_iterator(e.path(), ec2);
         it != fs::recursive_directory_iterator(); it.increment(ec2))
      if (it->is_directory(ec2)) ::chmod(it->path().c_str(), 0700);
    ::chmod(e.path().c_str(), 0700);
    fs::remove_all(e.path(), ec2);
  }
}

}  // namespace outpost
