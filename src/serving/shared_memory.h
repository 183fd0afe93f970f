// Triton's system shared-memory extension: a local client names a POSIX shared-memory object
// (its shm_open key) as a region, then passes input and output tensors by region, offset and
// byte size instead of in the request, so a camera frame never crosses a socket.
//
// Regions are read and written through the object's file descriptor (pread/pwrite), not a
// mapping: a client that shrinks its object while registered gets an error for its request,
// where a mapping would take the agent down with SIGBUS.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"

namespace outpost {

// A tensor's place in a region (offset from the region's own start).
struct SharedMemoryRef {
  std::string region;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};

struct SharedMemoryRegionStatus {
  std::string name, key;
  uint64_t offset = 0, byte_size = 0;
};

// Who registers and uses a region: regions are visible only to the caller that registered
// them (an API key's id, or a Unix-socket peer's uid for callers without one).
struct SharedMemoryCaller {
  std::string id;
  std::optional<uid_t> peer_uid;  // set on the Unix socket: the object must be this user's
};

class SharedMemoryRegistry {
 public:
  static constexpr size_t kMaxRegions = 64;

  SharedMemoryRegistry();
  ~SharedMemoryRegistry();
  SharedMemoryRegistry(const SharedMemoryRegistry&) = delete;
  SharedMemoryRegistry& operator=(const SharedMemoryRegistry&) = delete;

  // Opens `key` and checks that [offset, offset + byte_size) lies within it, that it belongs
  // to the caller (the peer's uid on the Unix socket, else the agent's own user) and that no
  // other user may write it. Throws Error(kInvalidArgument) saying which check failed,
  // Error(kResourceExhausted) past kMaxRegions.
  void Register(const std::string& name, const std::string& key, uint64_t offset,
                uint64_t byte_size, const SharedMemoryCaller& caller);
  // Empty `name`: every region of the caller. A request using a region keeps it open until
  // the request ends.
  void Unregister(const std::string& name, const SharedMemoryCaller& caller);
  // Empty `name`: every region of the caller.
  std::vector<SharedMemoryRegionStatus> Status(const std::string& name,
                                               const SharedMemoryCaller& caller) const;

  // Copies `ref`'s bytes into `out`. Throws Error(kInvalidArgument) naming `what` when the
  // region is unknown, the range is outside it, or the object no longer holds it.
  void Read(const SharedMemoryRef& ref, const SharedMemoryCaller& caller, std::string_view what,
            std::string& out) const;
  // Writes `data` at `ref` (which must be large enough).
  void Write(const SharedMemoryRef& ref, const SharedMemoryCaller& caller, std::string_view what,
             std::string_view data) const;

  size_t size() const;

 private:
  struct Region;
  // Throws Error(`missing`) for a name the caller has not registered.
  std::shared_ptr<const Region> Find(const std::string& name, const SharedMemoryCaller& caller,
                                     std::string_view what, ErrorCode missing) const;
  mutable std::mutex mu_;
  // By caller, then name: one caller's names neither see nor collide with another's.
  std::map<std::pair<std::string, std::string>, std::shared_ptr<const Region>> regions_;
};

}  // namespace outpost
