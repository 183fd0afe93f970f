#include "update/delta.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <memory>
#include <string>

#include "core/atomic_file.h"
#include "core/error.h"

namespace outpost::tuf {
namespace {

namespace fs = std::filesystem;

// A read-only mapping: zstd references the base in place instead of copying it.
class Mapped {
 public:
  explicit Mapped(const fs::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Fail(ErrorCode::kNotFound, "cannot open " + path.string());
    struct stat st {};
    ::fstat(fd, &st);
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
      data_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (data_ == MAP_FAILED) {
        ::close(fd);
        Fail(ErrorCode::kInternal, "cannot map " + path.string());
      }
    }
    ::close(fd);
  }
  ~Mapped() {
    if (data_ && data_ != MAP_FAILED) ::munmap(data_, size_);
  }
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  const void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// The window must reach back over the whole base for matches against it to be found.
int WindowLogFor(size_t bytes) {
  int log = std::bit_width(std::max<size_t>(bytes, 1) - 1);
  return std::clamp(log, 10, 31);
}

constexpr int kMaxWindowLog = 31;  // 2 GiB: the largest base a device will reference

void Check(size_t rc, const char* what) {
  if (ZSTD_isError(rc))
    Fail(ErrorCode::kInvalidArgument, std::string("delta: ") + what + ": " + ZSTD_getErrorName(rc));
}

struct File {
  FILE* f;
  ~File() {
    if (f) std::fclose(f);
  }
};

}  // namespace

void MakeDelta(const fs::path& base, const fs::path& target, const fs::path& out, int level) {
  Mapped old_file(base), new_file(target);
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  Check(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level), "level");
  Check(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_windowLog,
                               WindowLogFor(std::max(old_file.size(), new_file.size()))),
        "window");
  Check(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_enableLongDistanceMatching, 1), "long mode");
  Check(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1), "checksum");
  Check(ZSTD_CCtx_setPledgedSrcSize(cctx.get(), new_file.size()), "size");
  Check(ZSTD_CCtx_refPrefix(cctx.get(), old_file.data(), old_file.size()), "base");
  std::string delta(ZSTD_compressBound(new_file.size()), '\0');
  size_t n =
      ZSTD_compress2(cctx.get(), delta.data(), delta.size(), new_file.data(), new_file.size());
  Check(n, "compress");
  delta.resize(n);
  WriteFileAtomically(out, delta);
}

void ApplyDelta(const fs::path& base, const fs::path& delta, const fs::path& out,
                uint64_t max_length) {
  Mapped old_file(base), patch(delta);
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  Check(ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, kMaxWindowLog), "window");
  Check(ZSTD_DCtx_refPrefix(dctx.get(), old_file.data(), old_file.size()), "base");
  fs::path tmp = out.string() + ".tmp";
  File f{std::fopen(tmp.c_str(), "wb")};
  if (!f.f) Fail(ErrorCode::kInternal, "cannot write " + tmp.string());
  std::string buf(ZSTD_DStreamOutSize(), '\0');
  ZSTD_inBuffer in{patch.data(), patch.size(), 0};
  uint64_t written = 0;
  size_t rc = 1;
  try {
    while (in.pos < in.size || rc != 0) {
      ZSTD_outBuffer o{buf.data(), buf.size(), 0};
      size_t before = in.pos;
      rc = ZSTD_decompressStream(dctx.get(), &o, &in);
      Check(rc, "corrupt delta, or not made from this base");
      written += o.pos;
      if (written > max_length)
        Fail(ErrorCode::kPermissionDenied,
             "delta: produces more than the " + std::to_string(max_length) + " signed bytes");
      if (o.pos && std::fwrite(buf.data(), 1, o.pos, f.f) != o.pos)
        Fail(ErrorCode::kResourceExhausted, "delta: cannot write " + tmp.string());
      if (rc != 0 && in.pos == in.size && o.pos == 0 && before == in.pos)
        Fail(ErrorCode::kInvalidArgument, "delta: truncated");
    }
    if (std::fflush(f.f) != 0 || ::fsync(::fileno(f.f)) != 0)
      Fail(ErrorCode::kResourceExhausted, "delta: cannot write " + tmp.string());
    std::fclose(f.f);
    f.f = nullptr;
    fs::rename(tmp, out);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

}  // namespace outpost::tuf
