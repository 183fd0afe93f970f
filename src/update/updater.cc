#include "update/updater.h"

#include "core/atomic_file.h"
#include "core/error.h"

namespace outpost::tuf {

Updater::Updater(std::filesystem::path metadata_dir, Fetcher& fetcher, UpdaterLimits limits)
    : dir_(std::move(metadata_dir)), fetcher_(fetcher), limits_(limits) {}

std::optional<std::string> Updater::Cached(const std::string& role) const {
  auto path = dir_ / (role + ".json");
  if (!std::filesystem::exists(path)) return std::nullopt;
  return ReadFile(path);
}

void Updater::Persist(const std::string& role, const std::string& bytes) {
  if (Cached(role) == bytes) return;  // unchanged: spare the flash a rewrite
  WriteFileAtomically(dir_ / (role + ".json"), bytes);
}

std::string Updater::Required(const std::string& name, uint64_t max_length) {
  auto bytes = fetcher_.Fetch(name, max_length);
  if (!bytes) Fail(ErrorCode::kUnavailable, "tuf: the repository has no " + name);
  if (bytes->size() > max_length) {
    Fail(ErrorCode::kPermissionDenied,
         "tuf: " + name + " is longer than " + std::to_string(max_length) + " bytes");
  }
  return *bytes;
}

void Updater::Init(const std::string& root_bytes) {
  std::filesystem::create_directories(dir_);
  if (Cached("root"))
    Fail(ErrorCode::kFailedPrecondition, "tuf: " + dir_.string() + " already has a trusted root");
  TrustedSet check(root_bytes, Clock::now());  // it must at least be a root that signs itself
  Persist("root", root_bytes);
}

TrustedSet Updater::Refresh(Clock::time_point now) {
  auto root = Cached("root");
  if (!root)
    Fail(ErrorCode::kFailedPrecondition,
         "tuf: no trusted root in " + dir_.string() + " (init first)");
  TrustedSet set(*root, now);

  // 5.3: follow the rotation chain one version at a time, persisting each accepted root.
  for (int i = 0; i < limits_.max_root_rotations; ++i) {
    std::string name = std::to_string(set.root().version + 1) + ".root.json";
    auto next = fetcher_.Fetch(name, limits_.max_root_bytes);
    if (!next) break;
    if (next->size() > limits_.max_root_bytes)
      Fail(ErrorCode::kPermissionDenied, "tuf: " + name + " is too long");
    set.UpdateRoot(*next);
    Persist("root", *next);
  }
  set.CheckRootNotExpired();

  // Cached metadata first, so the new must not go back on it. A cached role that no longer
  // verifies (its keys were rotated out) is dropped: that is how a fast-forward attack with a
  // stolen key is recovered from.
  if (auto cached = Cached("timestamp")) {
    try {
      set.UpdateTimestamp(*cached, /*from_cache=*/true);
    } catch (const Error&) {
    }
  }
  set.UpdateTimestamp(Required("timestamp.json", limits_.max_timestamp_bytes));
  Persist("timestamp", set.accepted().at("timestamp"));

  if (auto cached = Cached("snapshot")) {
    try {
      set.UpdateSnapshot(*cached, /*from_cache=*/true);
    } catch (const Error&) {
    }
  }
  const MetaInfo& snap = set.timestamp()->snapshot;
  std::string snapshot_name = set.root().consistent_snapshot
                                  ? std::to_string(snap.version) + ".snapshot.json"
                                  : "snapshot.json";
  set.UpdateSnapshot(Required(snapshot_name, snap.length.value_or(limits_.max_snapshot_bytes)));
  Persist("snapshot", set.accepted().at("snapshot"));

  auto listed = set.snapshot()->meta.find("targets.json");
  if (listed == set.snapshot()->meta.end())
    Fail(ErrorCode::kPermissionDenied, "tuf: the snapshot does not list targets.json");
  const MetaInfo& targets = listed->second;
  std::string targets_name = set.root().consistent_snapshot
                                 ? std::to_string(targets.version) + ".targets.json"
                                 : "targets.json";
  set.UpdateTargets(Required(targets_name, targets.length.value_or(limits_.max_targets_bytes)));
  Persist("targets", set.accepted().at("targets"));
  return set;
}

}  // namespace outpost::tuf
