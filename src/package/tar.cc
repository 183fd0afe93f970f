#include "package/tar.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace outpost {
namespace {

constexpr size_t kBlock = 512;

void PutOctal(char* field, size_t width, uint64_t value) {
  // width - 1 digits and a NUL, as ustar expects.
  std::memset(field, '0', width - 1);
  field[width - 1] = '\0';
  for (size_t i = width - 1; i-- > 0 && value;) {
    field[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
}

bool ParseOctal(const char* field, size_t width, uint64_t& out) {
  out = 0;
  size_t i = 0;
  while (i < width && field[i] == ' ') ++i;
  size_t digits = 0;
  for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i, ++digits) {
    if (out >> 60) return false;  // would overflow
    out = out * 8 + static_cast<uint64_t>(field[i] - '0');
  }
  for (; i < width; ++i) {
    if (field[i] != ' ' && field[i] != '\0') return false;
  }
  return digits > 0;
}

uint64_t Checksum(const char* header) {
  uint64_t sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(header[i]);
  }
  return sum;
}

size_t Padding(uint64_t size) { return static_cast<size_t>((kBlock - size % kBlock) % kBlock); }

[[noreturn]] void Bad(const std::string& message) {
  Fail(ErrorCode::kInvalidArgument, "package archive: " + message);
}

}  // namespace

ReadFn ReadFromMemory(std::string_view data) {
  return [data, pos = size_t{0}](char* buf, size_t n) mutable {
    size_t k = std::min(n, data.size() - pos);
    std::memcpy(buf, data.data() + pos, k);
    pos += k;
    return k;
  };
}

bool IsSafeMemberName(std::string_view name) {
  if (name.empty() || name.size() > 255 || name.front() == '/' || name.back() == '/') return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    std::string_view part =
        name.substr(start, slash == std::string_view::npos ? name.npos : slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    for (char c : part) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-';
      if (!ok) return false;
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return true;
}

void TarWriter::Add(const std::string& name, std::string_view contents) {
  if (!IsSafeMemberName(name))
    Fail(ErrorCode::kInvalidArgument, "cannot pack file name '" + name + "'");
  char h[kBlock] = {};
  // Names over 100 bytes are split at a slash into ustar's prefix (155) and name (100) fields.
  std::string prefix, base = name;
  if (name.size() > 100) {
    size_t cut = name.rfind('/', 155);
    if (cut == std::string::npos || name.size() - cut - 1 > 100) {
      Fail(ErrorCode::kInvalidArgument, "file name too long to pack: '" + name + "'");
    }
    prefix = name.substr(0, cut);
    base = name.substr(cut + 1);
  }
  std::memcpy(h, base.data(), base.size());
  PutOctal(h + 100, 8, 0644);
  PutOctal(h + 108, 8, 0);
  PutOctal(h + 116, 8, 0);
  PutOctal(h + 124, 12, contents.size());
  PutOctal(h + 136, 12, 0);
  h[156] = '0';
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  std::memcpy(h + 345, prefix.data(), prefix.size());
  PutOctal(h + 148, 7, Checksum(h));
  h[155] = ' ';
  out_.append(h, kBlock);
  out_.append(contents);
  out_.append(Padding(contents.size()), '\0');
}

void TarWriter::Finish() { out_.append(2 * kBlock, '\0'); }

void TarReader::ReadExactly(char* buf, size_t n, const char* what) {
  size_t got = 0;
  while (got < n) {
    size_t r = read_(buf + got, n - got);
    if (r == 0) Bad(std::string("truncated (the file ends inside ") + what + ")");
    got += r;
  }
}

bool TarReader::Next(TarEntry& entry) {
  if (pending_) Fail(ErrorCode::kInternal, "TarReader::Next before the previous entry was read");
  char h[kBlock];
  size_t got = 0;
  while (got < kBlock) {
    size_t r = read_(h + got, kBlock - got);
    if (r == 0) {
      if (got == 0) Bad("truncated (no end-of-archive marker)");
      Bad("truncated (the file ends inside a header)");
    }
    got += r;
  }
  bool zero = std::all_of(h, h + kBlock, [](char c) { return c == 0; });
  if (zero) return false;  // end of archive (the second zero block is not required)
  uint64_t stored = 0;
  if (!ParseOctal(h + 148, 8, stored) || stored != Checksum(h))
    Bad("header checksum mismatch (corrupted)");
  if (std::memcmp(h + 257, "ustar", 5) != 0) Bad("not a ustar archive");
  std::string name(h, strnlen(h, 100));
  std::string prefix(h + 345, strnlen(h + 345, 155));
  if (!prefix.empty()) name = prefix + "/" + name;
  char type = h[156];
  if (type == '2' || type == '1') Bad("'" + name + "' is a link; packages hold regular files only");
  if (type != '0' && type != '\0')
    Bad("'" + name + "' is not a regular file (type '" + std::string(1, type) + "')");
  if (!IsSafeMemberName(name)) Bad("unsafe file name '" + name + "'");
  if (!ParseOctal(h + 124, 12, entry.size)) Bad("'" + name + "' has a malformed size");
  if (entry.size > max_entry_size_) {
    Bad("'" + name + "' declares " + std::to_string(entry.size) + " bytes, over the limit of " +
        std::to_string(max_entry_size_));
  }
  entry.name = std::move(name);
  remaining_ = entry.size;
  padding_ = Padding(entry.size);
  pending_ = true;
  return true;
}

void TarReader::ReadContents(const std::function<void(std::string_view)>& sink) {
  std::string buf(1 << 20, '\0');
  while (remaining_ > 0) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(remaining_, buf.size()));
    ReadExactly(buf.data(), want, "a file's contents");
    sink(std::string_view(buf.data(), want));
    remaining_ -= want;
  }
  char pad[kBlock];
  ReadExactly(pad, padding_, "a file's padding");
  if (!std::all_of(pad, pad + padding_, [](char c) { return c == 0; }))
    Bad("padding after a file is not zero (corrupted)");
  pending_ = false;
}

std::string TarReader::ReadAll() {
  std::string out;
  ReadContents([&](std::string_view chunk) { out.append(chunk); });
  return out;
}

}  // namespace outpost
