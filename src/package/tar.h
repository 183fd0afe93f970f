// The package container: POSIX ustar with regular files only, written deterministically (sorted
// by the caller, mtime 0, uid/gid 0, mode 0644), so `tar tf` can list any package. The reader
// is for untrusted bytes: it refuses anything but plain relative file names and regular files,
// and checks every declared size against a limit before reading.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace outpost {

class TarWriter {
 public:
  explicit TarWriter(std::string& out) : out_(out) {}
  void Add(const std::string& name, std::string_view contents);
  void Finish();  // the two zero blocks that end an archive

 private:
  std::string& out_;
};

// A source of archive bytes: fills `buf` with up to `n` bytes, returns how many (0 at the end).
using ReadFn = std::function<size_t(char* buf, size_t n)>;

// Reads from `data`, which must outlive the returned function.
ReadFn ReadFromMemory(std::string_view data);

struct TarEntry {
  std::string name;
  uint64_t size = 0;
};

class TarReader {
 public:
  // `max_entry_size` bounds what any header may declare.
  TarReader(ReadFn read, uint64_t max_entry_size)
      : read_(std::move(read)), max_entry_size_(max_entry_size) {}
  // Reads the next header; false at the end of the archive. Throws Error(kInvalidArgument)
  // naming the entry and what is wrong.
  bool Next(TarEntry& entry);
  // Streams the current entry's contents to `sink` in chunks, then skips its padding.
  void ReadContents(const std::function<void(std::string_view)>& sink);
  std::string ReadAll();

 private:
  void ReadExactly(char* buf, size_t n, const char* what);
  ReadFn read_;
  uint64_t max_entry_size_;
  uint64_t remaining_ = 0;  // content bytes of the current entry not yet read
  size_t padding_ = 0;      // zero bytes after them, up to a whole block
  bool pending_ = false;
};

// True for a safe member name: relative, components of [A-Za-z0-9._-] that are not "." or
// "..", at most 255 bytes.
bool IsSafeMemberName(std::string_view name);

}  // namespace outpost
