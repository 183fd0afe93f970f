#include "http/static_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <optional>

#include "http/server.h"

namespace outpost::http {
namespace {

struct ByteRange {
  uint64_t first = 0, length = 0;
};

std::optional<uint64_t> Number(std::string_view s) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return n;
}

enum class RangeKind { kWhole, kOne, kUnsatisfiable };

// One "bytes=" range against a file of `size` bytes. Anything else (several ranges, other
// units, malformed) is ignored: the whole file is sent.
RangeKind ParseRange(std::string_view header, uint64_t size, ByteRange& out) {
  constexpr std::string_view kUnit = "bytes=";
  if (header.substr(0, kUnit.size()) != kUnit) return RangeKind::kWhole;
  std::string_view spec = header.substr(kUnit.size());
  if (spec.find(',') != std::string_view::npos) return RangeKind::kWhole;
  size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return RangeKind::kWhole;
  std::string_view a = spec.substr(0, dash), b = spec.substr(dash + 1);
  if (a.empty()) {  // the last b bytes
    auto n = Number(b);
    if (!n) return RangeKind::kWhole;
    if (*n == 0 || size == 0) return RangeKind::kUnsatisfiable;
    out.length = std::min(*n, size);
    out.first = size - out.length;
    return RangeKind::kOne;
  }
  auto first = Number(a);
  std::optional<uint64_t> last = b.empty() ? std::optional<uint64_t>(UINT64_MAX) : Number(b);
  if (!first || !last || *last < *first) return RangeKind::kWhole;  // invalid: ignored
  if (*first >= size) return RangeKind::kUnsatisfiable;
  out.first = *first;
  out.length = std::min(*last, size - 1) - *first + 1;
  return RangeKind::kOne;
}

}  // namespace

void ServeFile(const std::filesystem::path& file, const Request& req, Response& res,
               const std::string& content_type) {
  int fd = ::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0) ::close(fd);
    res.status = 404;
    res.Set(JsonErrorBody("no such file"), "application/json");
    return;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  res.SetHeader("Accept-Ranges", "bytes");
  res.SetHeader("Content-Type", content_type);
  ByteRange range{0, size};
  RangeKind kind =
      req.HasHeader("Range") ? ParseRange(req.Header("Range"), size, range) : RangeKind::kWhole;
  if (kind == RangeKind::kUnsatisfiable) {
    ::close(fd);
    res.status = 416;
    res.SetHeader("Content-Range", "bytes */" + std::to_string(size));
    res.Set(JsonErrorBody("the range is outside the file"), "application/json");
    return;
  }
  if (kind == RangeKind::kOne) {
    res.status = 206;
    res.SetHeader("Content-Range", "bytes " + std::to_string(range.first) + "-" +
                                       std::to_string(range.first + range.length - 1) + "/" +
                                       std::to_string(size));
  } else {
    range = {0, size};
  }
  res.file = std::make_shared<FileBody>(fd, range.first, range.length);
}

}  // namespace outpost::http
