#include "serving/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"

namespace outpost {
namespace {

[[noreturn]] void Bad(const std::string& message) { Fail(ErrorCode::kInvalidArgument, message); }

bool ValidRegionName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// shm_open's names: one leading slash, then a file name in /dev/shm.
bool ValidKey(const std::string& key) {
  if (key.size() < 2 || key.size() > 255 || key[0] != '/') return false;
  if (key == "/." || key == "/..") return false;
  for (size_t i = 1; i < key.size(); ++i)
    if (key[i] == '/' || key[i] == '\0') return false;
  return true;
}

}  // namespace

struct SharedMemoryRegistry::Region {
  SharedMemoryRegionStatus status;
  int fd = -1;
  ~Region() {
    if (fd >= 0) ::close(fd);
  }
};

SharedMemoryRegistry::SharedMemoryRegistry() = default;
SharedMemoryRegistry::~SharedMemoryRegistry() = default;

void SharedMemoryRegistry::Register(const std::string& name, const std::string& key,
                                    uint64_t offset, uint64_t byte_size,
                                    const SharedMemoryCaller& caller) {
  if (!ValidRegionName(name))
    Bad("region name '" + name + "' must be 1-128 letters, digits, '_', '-' or '.'");
  if (!ValidKey(key))
    Bad("shared-memory key '" + key + "' must be '/' followed by a name without '/'");
  if (byte_size == 0) Bad("region '" + name + "': byte_size must be positive");
  if (offset > UINT64_MAX - byte_size) Bad("region '" + name + "': offset + byte_size overflows");

  auto region = std::make_shared<Region>();
  region->status = {name, key, offset, byte_size};
  // glibc opens /dev/shm/<name> with O_NOFOLLOW | O_CLOEXEC.
  region->fd = ::shm_open(key.c_str(), O_RDWR, 0);
  if (region->fd < 0)
    Bad("cannot open shared-memory object '" + key + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(region->fd, &st) != 0)
    Bad("cannot stat shared-memory object '" + key + "': " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) Bad("'" + key + "' is not a shared-memory object");
  // The agent reads and writes what a client names: the object must be the caller's own, so
  // that a client cannot have the agent write into another program's memory. Over TCP the
  // caller's user is unknown: there it must be the agent's own user's (a root peer on the Unix
  // socket may name any).
  if (caller.peer_uid) {
    if (*caller.peer_uid != 0 && st.st_uid != *caller.peer_uid)
      Bad("shared-memory object '" + key + "' belongs to uid " + std::to_string(st.st_uid) +
          ", not the caller's uid " + std::to_string(*caller.peer_uid));
  } else if (st.st_uid != ::geteuid()) {
    Bad("shared-memory object '" + key + "' belongs to uid " + std::to_string(st.st_uid) +
        ", not the agent's uid " + std::to_string(::geteuid()) +
        " (over TCP a region must be the agent's user's; a program of another user registers "
        "its own over the Unix socket)");
  }
  if (st.st_mode & S_IWOTH) {
    Bad("shared-memory object '" + key + "' may be written by every user (mode " +
        fmt::format("{:03o}", st.st_mode & 0777) + ")");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (offset + byte_size > size) {
    Bad("region '" + name + "' (offset " + std::to_string(offset) + ", " +
        std::to_string(byte_size) + " bytes) lies past the end of '" + key + "' (" +
        std::to_string(size) + " bytes)");
  }
  std::lock_guard lock(mu_);
  auto id = std::make_pair(caller.id, name);
  if (regions_.count(id)) Bad("a region named '" + name + "' is registered already");
  if (regions_.size() >= kMaxRegions) {
    Fail(ErrorCode::kResourceExhausted,
         std::to_string(kMaxRegions) + " shared-memory regions are registered; unregister one");
  }
  regions_.emplace(std::move(id), std::move(region));
}

void SharedMemoryRegistry::Unregister(const std::string& name, const SharedMemoryCaller& caller) {
  std::lock_guard lock(mu_);
  if (!name.empty()) {
    if (regions_.erase({caller.id, name}) == 0)
      Fail(ErrorCode::kNotFound, "no shared-memory region named '" + name + "'");
    return;
  }
  std::erase_if(regions_, [&](const auto& entry) { return entry.first.first == caller.id; });
}

std::vector<SharedMemoryRegionStatus> SharedMemoryRegistry::Status(
    const std::string& name, const SharedMemoryCaller& caller) const {
  std::vector<SharedMemoryRegionStatus> out;
  if (!name.empty()) {
    out.push_back(Find(name, caller, "status", ErrorCode::kNotFound)->status);
    return out;
  }
  std::lock_guard lock(mu_);
  for (const auto& [id, region] : regions_)
    if (id.first == caller.id) out.push_back(region->status);
  return out;
}

std::shared_ptr<const SharedMemoryRegistry::Region> SharedMemoryRegistry::Find(
    const std::string& name, const SharedMemoryCaller& caller, std::string_view what,
    ErrorCode missing) const {
  std::lock_guard lock(mu_);
  auto it = regions_.find({caller.id, name});
  if (it == regions_.end()) {
    Fail(missing, std::string(what) + ": no shared-memory region named '" + name + "'");
  }
  return it->second;
}

namespace {

// The absolute file offset of `ref` within `region`, after checking it lies inside.
uint64_t Locate(const SharedMemoryRegionStatus& region, const SharedMemoryRef& ref,
                std::string_view what, uint64_t bytes) {
  if (ref.offset > region.byte_size || bytes > region.byte_size - ref.offset) {
    Bad(std::string(what) + ": " + std::to_string(bytes) + " bytes at offset " +
        std::to_string(ref.offset) + " run past the end of region '" + region.name + "' (" +
        std::to_string(region.byte_size) + " bytes)");
  }
  return region.offset + ref.offset;
}

}  // namespace

void SharedMemoryRegistry::Read(const SharedMemoryRef& ref, const SharedMemoryCaller& caller,
                                std::string_view what, std::string& out) const {
  auto region = Find(ref.region, caller, what, ErrorCode::kInvalidArgument);
  uint64_t at = Locate(region->status, ref, what, ref.byte_size);
  out.resize(ref.byte_size);
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n =
        ::pread(region->fd, out.data() + done, out.size() - done, static_cast<off_t>(at + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Bad(std::string(what) + ": cannot read region '" + ref.region +
          "': " + (n < 0 ? std::strerror(errno) : "the shared-memory object was truncated"));
    }
    done += static_cast<size_t>(n);
  }
}

void SharedMemoryRegistry::Write(const SharedMemoryRef& ref, const SharedMemoryCaller& caller,
                                 std::string_view what, std::string_view data) const {
  auto region = Find(ref.region, caller, what, ErrorCode::kInvalidArgument);
  if (data.size() > ref.byte_size) {
    Bad(std::string(what) + ": " + std::to_string(data.size()) + " bytes do not fit the " +
        std::to_string(ref.byte_size) + " bytes given in region '" + ref.region + "'");
  }
  const uint64_t at = Locate(region->status, ref, what, data.size());
  // Growing the object would be a write past what the client sized: check it first.
  struct stat st {};
  if (::fstat(region->fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < at + data.size())
    Bad(std::string(what) + ": the shared-memory object of region '" + ref.region +
        "' was truncated");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n =
        ::pwrite(region->fd, data.data() + done, data.size() - done, static_cast<off_t>(at + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      Bad(std::string(what) + ": cannot write region '" + ref.region +
          "': " + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
}

size_t SharedMemoryRegistry::size() const {
  std::lock_guard lock(mu_);
  return regions_.size();
}

}  // namespace outpost
