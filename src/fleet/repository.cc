// The update repository kept by the fleet server (TUF 1.0, consistent snapshots), served to
// devices under /repo: metadata from the database, target files from the repository directory.
// Release keys sign targets offline; this server checks them and signs only snapshot and
// timestamp, with its online key, as the TUF specification advises for online roles.
#include <fmt/format.h>

#include <fstream>
#include <map>

#include "core/atomic_file.h"
#include "core/logging.h"
#include "fleet/fleet.h"
#include "package/sha256.h"
#include "update/tuf.h"

namespace outpost::fleet {

namespace fs = std::filesystem;

namespace {

bool IsSafeFileName(const std::string& f) {
  if (f.empty() || f.size() > 255 || f[0] == '.') return false;
  for (char c : f)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_')
      return false;
  return true;
}

void RequireRepository(const FleetOptions& o) {
  if (o.repository_dir.empty() || !o.online_key)
    Fail(ErrorCode::kFailedPrecondition,
         "this server keeps no update repository (start it with --repository-dir and "
         "--online-key)");
}

std::optional<SqlRow> Latest(SqlConnection& c, const std::string& role,
                             std::string_view lock = "") {
  auto rows = c.Query(fmt::format("SELECT name, version, body FROM repo_metadata WHERE role = ? "
                                  "ORDER BY version DESC LIMIT 1{}",
                                  lock),
                      {role});
  if (rows.empty()) return std::nullopt;
  return rows[0];
}

void Store(SqlConnection& c, const std::string& name, const std::string& role, int64_t version,
           const std::string& body) {
  c.Query(
      "INSERT INTO repo_metadata (name, role, version, body, created_ms) VALUES (?, ?, ?, ?, ?) "
      "ON CONFLICT (name) DO UPDATE SET version = excluded.version, body = excluded.body, "
      "created_ms = excluded.created_ms",
      {name, role, version, body, Fleet::Now()});
}

// Moves every target file `targets` lists from the uploads into the published targets, each
// checked whole against what is signed for it, before any metadata naming it is published.
// Target paths are file names here (the repository serves one directory).
void PublishUploads(const FleetOptions& options, const tuf::Targets& targets) {
  fs::path published = options.repository_dir / "targets";
  fs::create_directories(published);
  for (const auto& [path, info] : targets.targets) {
    auto sha_it = info.hashes.find("sha256");
    if (sha_it == info.hashes.end())
      Fail(ErrorCode::kInvalidArgument, "target " + path + " has no sha256");
    const std::string& sha = sha_it->second;
    std::string file = sha + "." + path;
    if (!IsSafeFileName(file))
      Fail(ErrorCode::kInvalidArgument,
           "bad target name " + path + " (this repository serves file names, not paths)");
    if (fs::exists(published / file)) continue;
    fs::path part = options.repository_dir / "uploads" / (file + ".part");
    if (!fs::exists(part))
      Fail(ErrorCode::kInvalidArgument, "target " + path + " was not uploaded");
    uint64_t size = 0;
    std::string got = Sha256File(part.string(), &size);
    if (size != info.length || got != sha) {
      fs::remove(part);
      Fail(ErrorCode::kPermissionDenied,
           fmt::format("the upload of {} is not what the targets metadata signs ({} bytes, sha256 "
                       "{}; signed: {} bytes, {}); it was discarded",
                       path, size, got.substr(0, 16), info.length, sha.substr(0, 16)));
    }
    fs::rename(part, published / file);
  }
}

constexpr const char* kDelegatedPrefix = "role:";  // repo_metadata.role of a delegated role

// The latest file of every targets role, top-level and delegated: what a snapshot lists.
std::map<std::string, tuf::RoleFile> TargetsRoles(SqlConnection& c) {
  std::map<std::string, tuf::RoleFile> out;
  if (auto t = Latest(c, "targets")) out["targets"] = {t->Text(2), t->Int(1)};
  for (const auto& row : c.Query("SELECT role, version, body FROM repo_metadata WHERE role LIKE ?",
                                 {std::string(kDelegatedPrefix) + "%"})) {
    std::string role = row.Text(0).substr(std::string(kDelegatedPrefix).size());
    auto& have = out[role];
    if (row.Int(1) > have.version) have = {row.Text(2), row.Int(1)};
  }
  return out;
}

// Signs a snapshot listing `files` (every targets role) and a timestamp naming it, with the
// online key, and stores both. `ts` is the current timestamp row, locked by the caller.
struct OnlineVersions {
  int64_t snapshot = 0, timestamp = 0;
};
OnlineVersions StoreOnlineRoles(SqlConnection& c, const FleetOptions& options,
                                const std::optional<SqlRow>& ts,
                                const std::map<std::string, tuf::RoleFile>& files) {
  auto snap = Latest(c, "snapshot");
  OnlineVersions v{snap ? snap->Int(1) + 1 : 1, ts ? ts->Int(1) + 1 : 1};
  auto expires = tuf::Clock::now() + std::chrono::hours(24) * options.online_expiry_days;
  const tuf::Signer online = tuf::Signer::FromEd25519(*options.online_key);
  tuf::OnlineRoles roles =
      tuf::SignOnlineRoles(files, v.snapshot, v.timestamp, expires, online, online);
  Store(c, fmt::format("{}.snapshot.json", v.snapshot), "snapshot", v.snapshot, roles.snapshot);
  Store(c, "timestamp.json", "timestamp", v.timestamp, roles.timestamp);
  return v;
}

json TargetNames(const tuf::Targets& targets) {
  json names = json::array();
  for (const auto& [path, info] : targets.targets) names.push_back(path);
  return names;
}

}  // namespace

json Fleet::PutRoot(const Caller& caller, const std::string& bytes) {
  RequireRepository(options_);
  tuf::Root next = tuf::ParseRootMetadata(bytes);
  // This server must be the only snapshot and timestamp signer the root names.
  std::string online = tuf::KeyIdOf(options_.online_key->pub.public_key);
  for (const char* role : {"snapshot", "timestamp"}) {
    const auto& r = next.roles.at(role);
    if (r.keyids != std::vector<std::string>{online} || r.threshold != 1)
      Fail(ErrorCode::kFailedPrecondition, std::string("the root's ") + role +
                                               " role must be this server's online key " +
                                               online.substr(0, 12) + " alone");
  }
  json out;
  db_.Transact([&](SqlConnection& c) {
    auto current = Latest(c, "root", db_.ForUpdate());
    if (current && next.version <= current->Int(1)) {
      out = {{"root_version", current->Int(1)}, {"accepted", false}};
      return;  // already have it
    }
    if (current) {
      tuf::TrustedSet set(current->Text(2), tuf::Clock::now());
      set.UpdateRoot(bytes);  // signed by the old root's threshold and its own; version + 1
    } else {
      tuf::TrustedSet set(bytes, tuf::Clock::now());  // the first root signs itself
      if (next.version != 1) Fail(ErrorCode::kInvalidArgument, "the first root must be version 1");
    }
    Store(c, fmt::format("{}.root.json", next.version), "root", next.version, bytes);
    c.Query("DELETE FROM repo_metadata WHERE name = 'root.json'");
    Store(c, "root.json", "root-latest", next.version, bytes);
    Audit(db_, c, caller, "repository.root", fmt::format("{}.root.json", next.version),
          {{"version", next.version}});
    out = {{"root_version", next.version}, {"accepted", true}};
  });
  return out;
}

json Fleet::UploadStatus(const std::string& file) {
  RequireRepository(options_);
  if (!IsSafeFileName(file)) Fail(ErrorCode::kInvalidArgument, "bad target file name");
  std::error_code ec;
  if (fs::exists(options_.repository_dir / "targets" / file, ec))
    return {{"file", file}, {"published", true}};
  auto size = fs::file_size(options_.repository_dir / "uploads" / (file + ".part"), ec);
  return {{"file", file}, {"published", false}, {"received", ec ? 0 : size}};
}

json Fleet::UploadTarget(const Caller& caller, const std::string& file, uint64_t offset,
                         const std::string& chunk) {
  (void)caller;  // the upload is audited when it is published
  RequireRepository(options_);
  if (!IsSafeFileName(file)) Fail(ErrorCode::kInvalidArgument, "bad target file name");
  fs::path dir = options_.repository_dir / "uploads";
  fs::create_directories(dir);
  fs::path part = dir / (file + ".part");
  std::error_code ec;
  uint64_t have = fs::exists(part, ec) ? fs::file_size(part) : 0;
  if (offset != have)
    Fail(ErrorCode::kFailedPrecondition,
         fmt::format("upload of {} is at byte {}, not {}", file, have, offset));
  std::ofstream out(part, std::ios::binary | std::ios::app);
  out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  out.flush();
  if (!out) Fail(ErrorCode::kUnavailable, "cannot write the upload (disk full?)");
  return {{"file", file}, {"received", have + chunk.size()}};
}

json Fleet::PublishTargets(const Caller& caller, const std::string& bytes) {
  RequireRepository(options_);
  std::string root;
  db_.Read([&](SqlConnection& c) {
    if (auto r = Latest(c, "root")) root = r->Text(2);
  });
  if (root.empty()) Fail(ErrorCode::kFailedPrecondition, "upload the repository's root first");
  tuf::Targets targets = tuf::VerifyTargets(root, bytes, tuf::Clock::now());
  PublishUploads(options_, targets);
  json out;
  db_.Transact([&](SqlConnection& c) {
    // The timestamp row is the repository's lock: one publication at a time across replicas.
    auto ts = Latest(c, "timestamp", db_.ForUpdate());
    auto current = Latest(c, "targets");
    if (current && targets.version <= current->Int(1))
      Fail(ErrorCode::kFailedPrecondition,
           fmt::format("targets v{} is not newer than the published v{}", targets.version,
                       current->Int(1)));
    auto files = TargetsRoles(c);
    files["targets"] = {bytes, targets.version};
    Store(c, fmt::format("{}.targets.json", targets.version), "targets", targets.version, bytes);
    const OnlineVersions v = StoreOnlineRoles(c, options_, ts, files);
    const json names = TargetNames(targets);
    Audit(db_, c, caller, "repository.publish", fmt::format("{}.targets.json", targets.version),
          {{"targets_version", targets.version},
           {"snapshot_version", v.snapshot},
           {"timestamp_version", v.timestamp},
           {"targets", names}});
    out = {{"targets_version", targets.version},
           {"snapshot_version", v.snapshot},
           {"timestamp_version", v.timestamp},
           {"targets", names.size()}};
  });
  return out;
}

// A delegated role's metadata, signed by the keys the published top-level targets delegates it
// to (a team's release keys, which this server never holds), for paths delegated to it.
json Fleet::PublishRole(const Caller& caller, const std::string& role, const std::string& bytes) {
  RequireRepository(options_);
  if (!IsSafeFileName(role) || role == "root" || role == "targets" || role == "snapshot" ||
      role == "timestamp")
    Fail(ErrorCode::kInvalidArgument, "bad delegated role name '" + role + "'");
  std::string root, top;
  db_.Read([&](SqlConnection& c) {
    if (auto r = Latest(c, "root")) root = r->Text(2);
    if (auto t = Latest(c, "targets")) top = t->Text(2);
  });
  if (top.empty()) Fail(ErrorCode::kFailedPrecondition, "publish the top-level targets first");
  tuf::Targets delegator = tuf::VerifyTargets(root, top, tuf::Clock::now());
  tuf::Targets targets = tuf::VerifyDelegatedTargets(delegator, role, bytes, tuf::Clock::now());
  PublishUploads(options_, targets);
  json out;
  db_.Transact([&](SqlConnection& c) {
    auto ts = Latest(c, "timestamp", db_.ForUpdate());
    auto files = TargetsRoles(c);
    if (auto it = files.find(role); it != files.end() && targets.version <= it->second.version)
      Fail(ErrorCode::kFailedPrecondition, fmt::format("{} v{} is not newer than the published v{}",
                                                       role, targets.version, it->second.version));
    files[role] = {bytes, targets.version};
    Store(c, fmt::format("{}.{}.json", targets.version, role), kDelegatedPrefix + role,
          targets.version, bytes);
    const OnlineVersions v = StoreOnlineRoles(c, options_, ts, files);
    const json names = TargetNames(targets);
    Audit(db_, c, caller, "repository.publish_role",
          fmt::format("{}.{}.json", targets.version, role),
          {{"role", role},
           {"role_version", targets.version},
           {"snapshot_version", v.snapshot},
           {"timestamp_version", v.timestamp},
           {"targets", names}});
    out = {{"role", role},
           {"role_version", targets.version},
           {"snapshot_version", v.snapshot},
           {"timestamp_version", v.timestamp},
           {"targets", names.size()}};
  });
  return out;
}

std::optional<std::string> Fleet::RepositoryMetadata(const std::string& name) {
  std::optional<std::string> out;
  db_.Read([&](SqlConnection& c) {
    auto rows = c.Query("SELECT body FROM repo_metadata WHERE name = ?", {name});
    if (!rows.empty()) out = rows[0].Text(0);
  });
  return out;
}

bool Fleet::RefreshTimestamp() {
  if (options_.repository_dir.empty() || !options_.online_key) return false;
  bool refreshed = false;
  db_.Transact([&](SqlConnection& c) {
    auto ts = Latest(c, "timestamp", db_.ForUpdate());
    auto snap = Latest(c, "snapshot");
    if (!ts || !snap) return;
    json signed_part = json::parse(ts->Text(2))["signed"];
    std::string expires = signed_part.value("expires", "");
    std::tm tm{};
    strptime(expires.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
    auto expiry = tuf::Clock::from_time_t(timegm(&tm));
    auto half = std::chrono::hours(12) * options_.online_expiry_days;
    if (expiry - tuf::Clock::now() > half) return;
    int64_t version = ts->Int(1) + 1;
    Store(
        c, "timestamp.json", "timestamp", version,
        tuf::SignTimestamp(snap->Text(2), snap->Int(1), version,
                           tuf::Clock::now() + std::chrono::hours(24) * options_.online_expiry_days,
                           tuf::Signer::FromEd25519(*options_.online_key)));
    Caller controller{"fleet:" + options_.replica, "timestamp-refresh", Scope::kAdmin, ""};
    Audit(db_, c, controller, "repository.timestamp", "timestamp.json", {{"version", version}});
    refreshed = true;
  });
  return refreshed;
}

}  // namespace outpost::fleet
