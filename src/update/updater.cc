#include "update/updater.h"

#include <set>

#include "core/atomic_file.h"
#include "core/error.h"

namespace outpost::tuf {

std::string QuoteName(const std::string& name) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : name) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
        c == '.' || c == '-' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Updater::Updater(std::filesystem::path metadata_dir, Fetcher& fetcher, UpdaterLimits limits)
    : dir_(std::move(metadata_dir)), fetcher_(fetcher), limits_(limits) {}

std::optional<std::string> Updater::Cached(const std::string& role) const {
  auto path = dir_ / (QuoteName(role) + ".json");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return std::nullopt;
  return ReadFile(path);
}

void Updater::Persist(const std::string& role, const std::string& bytes) {
  if (Cached(role) == bytes) return;  // unchanged: spare the flash a rewrite
  WriteFileAtomically(dir_ / (QuoteName(role) + ".json"), bytes);
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

std::string Updater::RemoteName(const std::string& role, int64_t version) const {
  return (set_->root().consistent_snapshot ? std::to_string(version) + "." : std::string()) +
         QuoteName(role) + ".json";
}

void Updater::Init(const std::string& root_bytes) {
  std::filesystem::create_directories(dir_);
  if (Cached("root"))
    Fail(ErrorCode::kFailedPrecondition, "tuf: " + dir_.string() + " already has a trusted root");
  TrustedSet check(root_bytes, Clock::now());  // it must at least be a root that signs itself
  Persist("root", root_bytes);
}

const TrustedSet& Updater::Refresh(Clock::time_point now) {
  auto root = Cached("root");
  if (!root)
    Fail(ErrorCode::kFailedPrecondition,
         "tuf: no trusted root in " + dir_.string() + " (init first)");
  set_.reset();
  set_.emplace(*root, now);
  TrustedSet& set = *set_;

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

  // What this client accepted before is loaded first, so that nothing new may go back on it.
  // A cached role that no longer verifies (its keys were rotated out) is not: that is how a
  // fast-forward attack with a stolen key is recovered from.
  if (auto cached = Cached("timestamp")) {
    try {
      set.UpdateTimestamp(*cached);
    } catch (const Error&) {
    }
  }
  std::string timestamp = Required("timestamp.json", limits_.max_timestamp_bytes);
  if (set.UpdateTimestamp(timestamp)) Persist("timestamp", timestamp);

  // The snapshot the timestamp names may be the one already here: then nothing is fetched.
  bool have_snapshot = false;
  if (auto cached = Cached("snapshot")) {
    try {
      set.UpdateSnapshot(*cached, /*trusted=*/true);
      have_snapshot = true;
    } catch (const Error&) {
    }
  }
  if (!have_snapshot) {
    const MetaInfo& snap = set.timestamp()->snapshot;
    std::string bytes = Required(RemoteName("snapshot", snap.version),
                                 snap.length.value_or(limits_.max_snapshot_bytes));
    set.UpdateSnapshot(bytes);
    Persist("snapshot", bytes);
  }
  LoadTargets("targets", "root");
  return set;
}

const Targets& Updater::LoadTargets(const std::string& role, const std::string& delegator) {
  TrustedSet& set = *set_;
  if (const Targets* t = set.targets(role)) return *t;
  if (auto cached = Cached(role)) {
    try {
      set.UpdateDelegatedTargets(*cached, role, delegator);
      return *set.targets(role);
    } catch (const Error&) {
    }
  }
  auto listed = set.snapshot()->meta.find(role + ".json");
  if (listed == set.snapshot()->meta.end())
    Fail(ErrorCode::kPermissionDenied, "tuf: " + role + " is delegated but not in the snapshot");
  std::string bytes = Required(RemoteName(role, listed->second.version),
                               listed->second.length.value_or(limits_.max_targets_bytes));
  set.UpdateDelegatedTargets(bytes, role, delegator);
  Persist(role, bytes);
  return *set.targets(role);
}

std::optional<TargetInfo> Updater::FindTarget(const std::string& target) {
  if (!set_) Fail(ErrorCode::kFailedPrecondition, "tuf: refresh before looking up targets");
  // (role, its delegator), the next to visit at the back.
  std::vector<std::pair<std::string, std::string>> to_visit{{"targets", "root"}};
  std::set<std::string> visited;
  while (!to_visit.empty() && static_cast<int>(visited.size()) <= limits_.max_delegations) {
    auto [role, delegator] = to_visit.back();
    to_visit.pop_back();
    if (visited.count(role)) continue;
    const Targets& t = LoadTargets(role, delegator);
    if (auto it = t.targets.find(target); it != t.targets.end()) return it->second;
    visited.insert(role);
    if (!t.delegations) continue;
    std::vector<std::pair<std::string, std::string>> children;
    for (const auto& [child, terminating] : t.delegations->RolesFor(target)) {
      children.emplace_back(child, role);
      if (terminating) {
        to_visit.clear();  // no backtracking past a terminating delegation
        break;
      }
    }
    to_visit.insert(to_visit.end(), children.rbegin(), children.rend());
  }
  return std::nullopt;
}

std::vector<std::pair<std::string, TargetInfo>> Updater::AllTargets() {
  if (!set_) Fail(ErrorCode::kFailedPrecondition, "tuf: refresh before listing targets");
  std::set<std::string> paths;
  std::vector<std::pair<std::string, std::string>> to_visit{{"targets", "root"}};
  std::set<std::string> visited;
  while (!to_visit.empty() && static_cast<int>(visited.size()) < limits_.max_listed_roles) {
    auto [role, delegator] = to_visit.back();
    to_visit.pop_back();
    if (!visited.insert(role).second) continue;
    const Targets* t = nullptr;
    try {
      t = &LoadTargets(role, delegator);
    } catch (const Error&) {
      if (role == "targets") throw;
      continue;  // a delegated role that does not verify offers nothing
    }
    for (const auto& [path, info] : t->targets) paths.insert(path);
    if (!t->delegations) continue;
    std::vector<std::pair<std::string, std::string>> children;
    if (t->delegations->succinct_roles) {
      // Only the bins the snapshot lists exist.
      for (const auto& [file, meta] : set_->snapshot()->meta) {
        std::string name = file.size() > 5 ? file.substr(0, file.size() - 5) : "";
        if (t->delegations->succinct_roles->IsRole(name)) children.emplace_back(name, role);
      }
    } else {
      for (const auto& r : t->delegations->roles) children.emplace_back(r.name, role);
    }
    to_visit.insert(to_visit.end(), children.rbegin(), children.rend());
  }
  std::vector<std::pair<std::string, TargetInfo>> out;
  for (const auto& path : paths) {
    try {
      if (auto info = FindTarget(path)) out.emplace_back(path, *info);
    } catch (const Error&) {
    }
  }
  return out;
}

}  // namespace outpost::tuf
