// The TUF client workflow across runs: the metadata this device trusts lives in a directory;
// each refresh loads it, walks the root rotation chain, then timestamp, snapshot and targets,
// and persists each role (atomically) only once it is accepted.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "update/tuf.h"

namespace outpost::tuf {

// Fetches a metadata file by name. Returns nullopt when the repository has no such file;
// throws Error(kPermissionDenied) when the server sends more than `max_length` bytes (endless
// data) and Error(kUnavailable) when it cannot be reached.
class Fetcher {
 public:
  virtual ~Fetcher() = default;
  virtual std::optional<std::string> Fetch(const std::string& name, uint64_t max_length) = 0;
};

struct UpdaterLimits {
  uint64_t max_root_bytes = 512 * 1024;
  uint64_t max_timestamp_bytes = 16 * 1024;
  uint64_t max_snapshot_bytes = 2 * 1024 * 1024;  // when the timestamp does not give a length
  uint64_t max_targets_bytes = 8 * 1024 * 1024;   // when the snapshot does not give a length
  int max_root_rotations = 32;
};

class Updater {
 public:
  Updater(std::filesystem::path metadata_dir, Fetcher& fetcher, UpdaterLimits limits = {});

  // Installs the first trusted root (out of band: shipped with the device). Refuses to
  // replace an existing one.
  void Init(const std::string& root_bytes);

  // One refresh (TUF client workflow 5.1-5.6). Throws Error as TrustedSet does; whatever was
  // accepted before the failure stays persisted, nothing refused is written.
  TrustedSet Refresh(Clock::time_point now);

 private:
  std::optional<std::string> Cached(const std::string& role) const;
  void Persist(const std::string& role, const std::string& bytes);
  std::string Required(const std::string& name, uint64_t max_length);

  std::filesystem::path dir_;
  Fetcher& fetcher_;
  UpdaterLimits limits_;
};

}  // namespace outpost::tuf
