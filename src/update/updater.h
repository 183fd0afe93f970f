// The TUF client workflow across runs: the metadata this device trusts lives in a directory;
// each refresh loads it, walks the root rotation chain, then timestamp, snapshot and targets,
// and persists each role (atomically, the bytes as served) only once it is accepted. Targets
// are looked up through delegations as the specification's pre-order depth-first search, with
// delegated metadata loaded as the search reaches it.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

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
  int max_delegations = 32;    // roles visited in one target lookup
  int max_listed_roles = 256;  // roles visited when listing every target
};

// A role name as it appears in a URL and a file name: every byte but [A-Za-z0-9_.~-]
// percent-encoded ("../a" -> "..%2Fa"), as python-tuf names them.
std::string QuoteName(const std::string& name);

class Updater {
 public:
  Updater(std::filesystem::path metadata_dir, Fetcher& fetcher, UpdaterLimits limits = {});

  // Installs the first trusted root (out of band: shipped with the device). Refuses to
  // replace an existing one.
  void Init(const std::string& root_bytes);

  // One refresh (TUF client workflow 5.1-5.6). Throws Error as TrustedSet does; whatever was
  // accepted before the failure stays persisted, nothing refused is written.
  const TrustedSet& Refresh(Clock::time_point now);

  // The most trusted answer for `target` (after Refresh): nullopt when no role reached within
  // max_delegations lists it.
  std::optional<TargetInfo> FindTarget(const std::string& target);

  // Every target the repository offers: each path listed by a role reachable from the
  // top-level targets, answered as FindTarget answers it (a role cannot list a path it was not
  // delegated, nor override a more trusted role).
  std::vector<std::pair<std::string, TargetInfo>> AllTargets();

 private:
  std::optional<std::string> Cached(const std::string& role) const;
  void Persist(const std::string& role, const std::string& bytes);
  std::string Required(const std::string& name, uint64_t max_length);
  std::string RemoteName(const std::string& role, int64_t version) const;
  const Targets& LoadTargets(const std::string& role, const std::string& delegator);

  std::filesystem::path dir_;
  Fetcher& fetcher_;
  UpdaterLimits limits_;
  std::optional<TrustedSet> set_;
};

}  // namespace outpost::tuf
