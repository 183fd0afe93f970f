#include "repo_commands.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_input.h"
#include "core/names.h"
#include "package/package.h"
#include "package/sha256.h"
#include "repo_layout.h"
#include "update/delta.h"
#include "update/http_fetcher.h"
#include "update/tuf.h"
#include "update/tuf_hashes.h"
#include "update/updater.h"

namespace outpost {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using tuf::Clock;

struct RepoOptions {
  std::string dir, package, expires_days_text, delta_from, kind = "model", role;
  std::vector<std::string> new_root_keys, sign_keys;
  int64_t version = 0;
  std::vector<std::string> root_keys, targets_keys, snapshot_keys, timestamp_keys;
  int root_threshold = 1, targets_threshold = 1;
  int expires_days = 365, online_expires_days = 7;
  // tuf client (conformance CLI)
  std::string metadata_dir, metadata_url, target_name, target_base_url, target_dir, root_file;
  // delegations
  std::string target_path;
  std::vector<std::string> paths, hash_prefixes, delegate_keys;
  int delegate_threshold = 1;
  bool terminating = false;
  // canonical
  std::vector<std::string> files;
  std::string out_dir;
};
RepoOptions& Opts() {
  static RepoOptions o;
  return o;
}

std::vector<tuf::Signer> LoadKeys(const std::vector<std::string>& paths) {
  std::vector<tuf::Signer> keys;
  for (const auto& p : paths) keys.push_back(tuf::Signer::Load(p));
  return keys;
}

std::vector<const tuf::Signer*> Ptrs(const std::vector<tuf::Signer>& keys) {
  std::vector<const tuf::Signer*> out;
  for (const auto& k : keys) out.push_back(&k);
  return out;
}

using PublicTufKey = std::pair<std::string, json>;  // key id, key object

// Public halves only: a secret key file, or a .pub file (the fleet server's online key, whose
// secret half never leaves the server; a team's key for a delegation).
std::vector<PublicTufKey> LoadPublicKeys(const std::vector<std::string>& paths) {
  std::vector<PublicTufKey> keys;
  for (const auto& p : paths) keys.push_back(tuf::LoadTufPublicKey(p));
  return keys;
}

json Role(const std::vector<PublicTufKey>& keys, int threshold, json& all_keys) {
  json ids = json::array();
  for (const auto& [id, key] : keys) {
    all_keys[id] = key;
    ids.push_back(id);
  }
  return {{"keyids", ids}, {"threshold", threshold}};
}

std::vector<PublicTufKey> PublicHalves(const std::vector<tuf::Signer>& keys) {
  std::vector<PublicTufKey> out;
  for (const auto& k : keys) out.emplace_back(k.keyid(), k.key_json());
  return out;
}

std::string Expires(int days) {
  return tuf::FormatExpiry(Clock::now() + std::chrono::hours(24) * days);
}

json ReadSigned(const fs::path& p) { return json::parse(ReadFile(p))["signed"]; }

void Write(const fs::path& p, const json& envelope) {
  WriteFileAtomically(p, envelope.dump(1) + "\n");
}

int64_t LatestTargetsVersion(const fs::path& meta) {
  int64_t version = LatestVersion(meta, "targets");
  if (version == 0)
    Fail(ErrorCode::kFailedPrecondition,
         meta.string() + " has no targets metadata (repo init first)");
  return version;
}

// Delegated role names this tool writes: they are file and URL names as they are.
void CheckRoleName(const std::string& role) {
  bool ok = !role.empty() && role.size() <= 64 && role[0] != '.' && !IsTopLevelRole(role);
  for (char c : role)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.');
  if (!ok)
    Fail(ErrorCode::kInvalidArgument,
         "role '" + role +
             "': a delegated role is named with letters, digits, '-', '_' and '.' "
             "(not a top-level role's name)");
}

// Refuses a target the top-level targets does not delegate to `role`: clients would never
// find it there. The delegation is read as clients read it (signed, not expired, parsed and
// matched by the TUF client's own code).
void RequireDelegated(const fs::path& meta, const std::string& role, const std::string& target) {
  CheckRoleName(role);
  const tuf::Targets top = tuf::VerifyTargets(
      ReadFile(meta / "root.json"),
      ReadFile(meta / (std::to_string(LatestTargetsVersion(meta)) + ".targets.json")),
      Clock::now());
  if (!top.delegations || !top.delegations->Find(role))
    Fail(ErrorCode::kFailedPrecondition,
         "the top-level targets delegates nothing to " + role + " (repo delegate first)");
  const auto roles = top.delegations->RolesFor(target);
  if (std::none_of(roles.begin(), roles.end(), [&](const auto& r) { return r.first == role; }))
    Fail(ErrorCode::kInvalidArgument,
         "'" + target + "' is outside the paths delegated to " + role + " (--target-path)");
}

// Adds (or replaces) a delegation from the top-level targets to ROLE, for its paths and keys,
// and signs a new targets version.
int RepoDelegate() {
  auto& o = Opts();
  CheckRoleName(o.role);
  if (o.paths.empty() == o.hash_prefixes.empty())
    Fail(ErrorCode::kInvalidArgument, "give --paths or --path-hash-prefix (one of them)");
  fs::path meta = fs::path(o.dir) / "metadata";
  int64_t version = LatestTargetsVersion(meta);
  json targets = ReadSigned(meta / (std::to_string(version) + ".targets.json"));
  json d = targets.value("delegations", json{{"keys", json::object()}, {"roles", json::array()}});
  if (d.contains("succinct_roles"))
    Fail(ErrorCode::kFailedPrecondition, "these targets delegate to hashed bins already");
  auto keys = LoadPublicKeys(o.delegate_keys);
  if (static_cast<int>(keys.size()) < o.delegate_threshold)
    Fail(ErrorCode::kInvalidArgument, "--threshold is more than the keys given");
  json role = Role(keys, o.delegate_threshold, d["keys"]);
  role["name"] = o.role;
  role["terminating"] = o.terminating;
  if (!o.paths.empty()) role["paths"] = o.paths;
  if (!o.hash_prefixes.empty()) role["path_hash_prefixes"] = o.hash_prefixes;
  json roles = json::array();
  bool replaced = false;
  for (auto& r : d["roles"]) {
    if (r.value("name", "") == o.role) {
      roles.push_back(role);
      replaced = true;
    } else {
      roles.push_back(r);
    }
  }
  if (!replaced) roles.push_back(role);
  d["roles"] = roles;
  // Keys no delegation uses any more leave.
  json used = json::object();
  for (const auto& r : roles)
    for (const auto& id : r["keyids"])
      used[id.get<std::string>()] = d["keys"][id.get<std::string>()];
  d["keys"] = used;
  targets["delegations"] = d;
  targets["version"] = version + 1;
  targets["expires"] = Expires(o.expires_days);
  Write(meta / (std::to_string(version + 1) + ".targets.json"),
        tuf::SignEnvelope(targets, Ptrs(LoadKeys(o.targets_keys))));
  std::cout << (replaced ? "replaced" : "added") << " the delegation to " << o.role << " (targets v"
            << version + 1 << "); its keys publish with `outpost repo add --role " << o.role
            << "`\n";
  return 0;
}

int RepoInit() {
  auto& o = Opts();
  fs::path meta = fs::path(o.dir) / "metadata";
  if (fs::exists(meta / "root.json"))
    Fail(ErrorCode::kFailedPrecondition, o.dir + " already holds a repository");
  fs::create_directories(meta);
  fs::create_directories(fs::path(o.dir) / "targets");
  auto root_keys = LoadKeys(o.root_keys);
  auto targets_keys = LoadKeys(o.targets_keys);
  auto snapshot_keys = LoadPublicKeys(o.snapshot_keys),
       timestamp_keys = LoadPublicKeys(o.timestamp_keys);
  json keys = json::object();
  json roles = {{"root", Role(PublicHalves(root_keys), o.root_threshold, keys)},
                {"targets", Role(PublicHalves(targets_keys), o.targets_threshold, keys)},
                {"snapshot", Role(snapshot_keys, 1, keys)},
                {"timestamp", Role(timestamp_keys, 1, keys)}};
  json root = {{"_type", "root"},
               {"spec_version", "1.0.31"},
               {"version", 1},
               {"expires", Expires(o.expires_days)},
               {"consistent_snapshot", true},
               {"keys", keys},
               {"roles", roles}};
  json signed_root = tuf::SignEnvelope(root, Ptrs(root_keys));
  Write(meta / "1.root.json", signed_root);
  Write(meta / "root.json", signed_root);
  json targets = {{"_type", "targets"},
                  {"spec_version", "1.0.31"},
                  {"version", 1},
                  {"expires", Expires(o.expires_days)},
                  {"targets", json::object()}};
  Write(meta / "1.targets.json", tuf::SignEnvelope(targets, Ptrs(targets_keys)));
  std::cout << "repository initialised in " << o.dir << " (publish to make it servable)\n";
  return 0;
}

// Copies `file` into the targets directory under its consistent-snapshot name and returns
// the TUF target entry for it.
json AddTargetFile(const fs::path& repo, const fs::path& file, const std::string& target,
                   json custom) {
  uint64_t size = 0;
  std::string sha = Sha256File(file, &size);
  const fs::path path(target);
  fs::path dest = repo / "targets" / path.parent_path() / (sha + "." + path.filename().string());
  fs::create_directories(dest.parent_path());
  fs::path tmp = dest.string() + ".tmp";
  fs::copy_file(file, tmp, fs::copy_options::overwrite_existing);
  fs::rename(tmp, dest);
  return {{"length", size}, {"hashes", {{"sha256", sha}}}, {"custom", std::move(custom)}};
}

int RepoAdd() {
  auto& o = Opts();
  fs::path meta = fs::path(o.dir) / "metadata";
  PackageReport report =
      VerifyPackageFile(o.package, nullptr);  // well-formed; trust is the device's business
  const auto& m = report.manifest;
  std::string name = o.target_path.empty() ? m.name + "-" + m.version + ".opkg" : o.target_path;
  const std::string role = o.role.empty() ? "targets" : o.role;
  int64_t version = LatestVersion(meta, role);
  json targets;
  if (role == "targets") {
    version = LatestTargetsVersion(meta);
    targets = ReadSigned(meta / (std::to_string(version) + ".targets.json"));
  } else {
    RequireDelegated(meta, role, name);
    if (!o.delta_from.empty())
      Fail(ErrorCode::kInvalidArgument, "deltas are offered from the top-level targets only");
    targets =
        version > 0
            ? ReadSigned(meta / (std::to_string(version) + "." + role + ".json"))
            : json{{"_type", "targets"}, {"spec_version", "1.0.31"}, {"targets", json::object()}};
  }
  targets["version"] = version + 1;
  targets["expires"] = Expires(o.expires_days);
  targets["targets"][name] = AddTargetFile(
      o.dir, o.package, name, {{"name", m.name}, {"version", m.version}, {"kind", o.kind}});
  std::string delta_name;
  if (!o.delta_from.empty()) {
    PackageReport base = VerifyPackageFile(o.delta_from, nullptr);
    if (base.manifest.name != m.name || CompareVersions(base.manifest.version, m.version) >= 0)
      Fail(ErrorCode::kInvalidArgument, "--delta-from must be an older version of " + m.name);
    delta_name = m.name + "-" + m.version + ".from-" + base.manifest.version + ".opkg.zst";
    fs::path tmp = fs::path(o.dir) / "targets" / (".delta-" + std::to_string(::getpid()));
    tuf::MakeDelta(o.delta_from, o.package, tmp);
    targets["targets"][delta_name] =
        AddTargetFile(o.dir, tmp, delta_name,
                      {{"name", m.name},
                       {"version", m.version},
                       {"kind", o.kind},
                       {"delta_from", base.manifest.version},
                       {"base_sha256", Sha256File(o.delta_from, nullptr)},
                       {"full_target", name}});
    fs::remove(tmp);
  }
  Write(meta / (std::to_string(version + 1) + "." + role + ".json"),
        tuf::SignEnvelope(targets, Ptrs(LoadKeys(o.targets_keys))));
  std::cout << "added " << name;
  if (!delta_name.empty())
    std::cout << " and " << delta_name << " ("
              << targets["targets"][delta_name]["length"].get<uint64_t>() << " bytes)";
  std::cout << " (" << role << " v" << version + 1 << ")\n";
  return 0;
}

// Adds signatures to an existing root or targets version (keys held by different people
// sign in turn until the threshold is reached).
int RepoSign() {
  auto& o = Opts();
  if (o.role != "root" && o.role != "targets")
    Fail(ErrorCode::kInvalidArgument, "--role must be root or targets");
  fs::path meta = fs::path(o.dir) / "metadata";
  int64_t version = o.version > 0 ? o.version : LatestVersion(meta, o.role);
  fs::path file = meta / (std::to_string(version) + "." + o.role + ".json");
  json envelope = json::parse(ReadFile(file));
  std::string canonical = tuf::CanonicalJson(envelope["signed"]);
  for (const auto& key : LoadKeys(o.sign_keys)) {
    const std::string& id = key.keyid();
    json kept = json::array();
    for (const auto& sig : envelope["signatures"])
      if (sig["keyid"] != id) kept.push_back(sig);
    kept.push_back({{"keyid", id}, {"sig", ToHex(key.Sign(canonical))}});
    envelope["signatures"] = kept;
  }
  Write(file, envelope);
  if (o.role == "root" && version == LatestVersion(meta, "root"))
    Write(meta / "root.json", envelope);
  std::cout << file.filename().string() << " now has " << envelope["signatures"].size()
            << " signature(s)\n";
  return 0;
}

// Root version N+1 with new keys or thresholds for any role. It is signed by the current root
// keys (the client requires the old root's threshold) and by the new root keys (and the new
// root's own threshold); `repo sign` adds signatures held elsewhere. Changing the targets keys
// re-signs the latest targets with them; `repo publish` with the new snapshot and timestamp
// keys makes the rotation visible.
int RepoRotate() {
  auto& o = Opts();
  fs::path meta = fs::path(o.dir) / "metadata";
  int64_t version = LatestVersion(meta, "root");
  json root = ReadSigned(meta / (std::to_string(version) + ".root.json"));
  json keys = root["keys"];
  auto replace = [&](const std::string& role, const std::vector<std::string>& paths,
                     int threshold) {
    if (!paths.empty()) root["roles"][role] = Role(LoadPublicKeys(paths), threshold, keys);
  };
  replace("root", o.new_root_keys, o.root_threshold);
  replace("targets", o.targets_keys, o.targets_threshold);
  replace("snapshot", o.snapshot_keys, 1);
  replace("timestamp", o.timestamp_keys, 1);
  // Keys no role uses any more leave the root.
  json used = json::object();
  for (const auto& [role, r] : root["roles"].items())
    for (const auto& id : r["keyids"]) used[id.get<std::string>()] = keys[id.get<std::string>()];
  root["keys"] = used;
  root["version"] = version + 1;
  root["expires"] = Expires(o.expires_days);
  auto signers = LoadKeys(o.root_keys);
  auto new_signers = LoadKeys(o.new_root_keys);
  for (auto& k : new_signers) signers.push_back(std::move(k));
  json signed_root = tuf::SignEnvelope(root, Ptrs(signers));
  Write(meta / (std::to_string(version + 1) + ".root.json"), signed_root);
  Write(meta / "root.json", signed_root);
  std::cout << "root v" << version + 1 << " written";
  if (!o.targets_keys.empty()) {
    int64_t tv = LatestTargetsVersion(meta);
    json targets = ReadSigned(meta / (std::to_string(tv) + ".targets.json"));
    targets["version"] = tv + 1;
    targets["expires"] = Expires(o.expires_days);
    Write(meta / (std::to_string(tv + 1) + ".targets.json"),
          tuf::SignEnvelope(targets, Ptrs(LoadKeys(o.targets_keys))));
    std::cout << "; targets re-signed as v" << tv + 1;
  }
  std::cout << " (publish to make it visible)\n";
  return 0;
}

int RepoPublish() {
  auto& o = Opts();
  fs::path meta = fs::path(o.dir) / "metadata";
  std::map<std::string, tuf::RoleFile> roles;
  for (const auto& [role, versions] : MetadataVersions(meta)) {
    if (IsTopLevelRole(role)) continue;
    roles[role] = {ReadFile(meta / (std::to_string(versions.back()) + "." + role + ".json")),
                   versions.back()};
  }
  int64_t targets_version = LatestTargetsVersion(meta);
  roles["targets"] = {ReadFile(meta / (std::to_string(targets_version) + ".targets.json")),
                      targets_version};
  for (const auto& r : ReadSigned(meta / (std::to_string(targets_version) + ".targets.json"))
                           .value("delegations", json::object())
                           .value("roles", json::array()))
    if (!roles.count(r.value("name", "")))
      std::cerr << "warning: " << r.value("name", "")
                << " is delegated but has published nothing yet (repo add --role): clients "
                   "looking for its paths will fail until it does\n";
  json previous =
      fs::exists(meta / "timestamp.json") ? ReadSigned(meta / "timestamp.json") : json();
  int64_t snapshot_version =
      previous.is_null() ? 1 : previous["meta"]["snapshot.json"]["version"].get<int64_t>() + 1;
  int64_t timestamp_version = previous.is_null() ? 1 : previous["version"].get<int64_t>() + 1;
  auto expires = tuf::Clock::now() + std::chrono::hours(24) * o.online_expires_days;
  tuf::OnlineRoles online = tuf::SignOnlineRoles(roles, snapshot_version, timestamp_version,
                                                 expires, tuf::Signer::Load(o.snapshot_keys.at(0)),
                                                 tuf::Signer::Load(o.timestamp_keys.at(0)));
  WriteFileAtomically(meta / (std::to_string(snapshot_version) + ".snapshot.json"),
                      online.snapshot);
  // The timestamp is written last: until it is, clients keep seeing the previous publication.
  WriteFileAtomically(meta / "timestamp.json", online.timestamp);
  std::cout << "published snapshot v" << snapshot_version << ", timestamp v" << timestamp_version
            << "\n";
  return 0;
}

// Each JSON file in TUF's canonical form (what a signature covers), written under the same name
// in the output directory: to sign with other tools, or to compare encoders.
int RepoCanonical() {
  auto& o = Opts();
  fs::create_directories(o.out_dir);
  int failed = 0;
  for (const auto& file : o.files) {
    try {
      json j = ParseJson(ReadFile(file), JsonLimits::Document(64u << 20), file);
      WriteFileAtomically(fs::path(o.out_dir) / fs::path(file).filename(), tuf::CanonicalJson(j));
    } catch (const Error& e) {
      std::cerr << file << ": " << e.what() << "\n";
      ++failed;
    }
  }
  return failed ? 1 : 0;
}

// The TUF conformance suite's client CLI: exit 0 on success, 1 on any failure.
int TufClient(CLI::App& app) {
  auto& o = Opts();
  auto* tuf_cmd = app.get_subcommand("tuf");
  if (tuf_cmd->got_subcommand("init")) {
    tuf::HttpFetcher unused(o.metadata_url);  // init reads no network
    tuf::Updater(o.metadata_dir, unused).Init(ReadFile(o.root_file));
    return 0;
  }
  tuf::HttpFetcher fetcher(o.metadata_url);
  tuf::Updater updater(o.metadata_dir, fetcher);
  const bool consistent = updater.Refresh(Clock::now()).root().consistent_snapshot;
  if (tuf_cmd->got_subcommand("refresh")) return 0;
  auto info = updater.FindTarget(o.target_name);
  if (!info) Fail(ErrorCode::kNotFound, "tuf: no target '" + o.target_name + "'");
  fs::path name = fs::path(o.target_name);
  std::string remote =
      consistent ? (name.parent_path() / (info->NameHash() + "." + name.filename().string()))
                       .generic_string()
                 : o.target_name;
  std::string base = o.target_base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  fs::create_directories(o.target_dir);
  // One file per target path, named as python-tuf names it ("a/b.txt" -> "a%2Fb.txt"), so that
  // paths that share a file name do not collide and a target fetched again lands on the same
  // name.
  fs::path dest = fs::path(o.target_dir) / tuf::QuoteName(o.target_name);
  std::error_code ec;
  if (fs::is_regular_file(dest, ec) && fs::file_size(dest, ec) == info->length) {
    try {
      tuf::CheckFileHashes(dest, info->hashes, o.target_name);
      return 0;  // already here and verified: not fetched again
    } catch (const Error&) {
    }
  }
  fetcher.Download(base + "/" + remote, dest, info->length, info->hashes);
  return 0;
}

}  // namespace

void AddRepoCommands(CLI::App& app) {
  auto& o = Opts();
  auto* repo =
      app.add_subcommand("repo", "Maintain an update repository (TUF metadata and targets)");
  repo->require_subcommand(1);
  auto* init = repo->add_subcommand(
      "init", "Create a repository: root, targets, snapshot and timestamp roles");
  init->add_option("dir", o.dir, "Repository directory")->required();
  init->add_option("--root-key", o.root_keys, "Root secret key (repeatable)")->required();
  init->add_option("--root-threshold", o.root_threshold, "Root signatures required")
      ->capture_default_str();
  init->add_option("--targets-key", o.targets_keys, "Targets secret key (repeatable)")->required();
  init->add_option("--targets-threshold", o.targets_threshold, "Targets signatures required")
      ->capture_default_str();
  init->add_option("--snapshot-key", o.snapshot_keys, "Snapshot secret key")->required();
  init->add_option("--timestamp-key", o.timestamp_keys, "Timestamp secret key")->required();
  init->add_option("--expires-days", o.expires_days, "Root and targets lifetime")
      ->capture_default_str();
  auto* add =
      repo->add_subcommand("add", "Add a model package as a target (signs a new targets version)");
  add->add_option("dir", o.dir, "Repository directory")->required();
  add->add_option("package", o.package, "Package file")->required()->check(CLI::ExistingFile);
  add->add_option("--targets-key", o.targets_keys, "Targets secret key (repeatable)")->required();
  add->add_option("--expires-days", o.expires_days, "Targets lifetime")->capture_default_str();
  add->add_option("--delta-from", o.delta_from,
                  "An older package of the same model: also offer a zstd delta from it")
      ->check(CLI::ExistingFile);
  add->add_option("--role", o.role,
                  "A delegated role to add it to (signed with that role's --targets-key)");
  add->add_option("--target-path", o.target_path,
                  "Its path in the repository (default NAME-VERSION.opkg), within the role's "
                  "delegated paths");
  add->add_option("--kind", o.kind, "What the package updates: model or agent")
      ->check(CLI::IsMember({"model", "agent"}))
      ->capture_default_str();
  auto* delegate = repo->add_subcommand(
      "delegate", "Let ROLE's own keys sign for some target paths (a new targets version)");
  delegate->add_option("dir", o.dir, "Repository directory")->required();
  delegate->add_option("role", o.role, "Delegated role name")->required();
  delegate->add_option("--paths", o.paths, "Path patterns ('models/vision/*'; repeatable)");
  delegate->add_option("--path-hash-prefix", o.hash_prefixes,
                       "Hex prefixes of the target path's sha256 (hashed bins; repeatable)");
  delegate->add_option("--key", o.delegate_keys, "The role's public keys (NAME.pub; repeatable)")
      ->required();
  delegate->add_option("--threshold", o.delegate_threshold, "Signatures the role needs")
      ->capture_default_str();
  delegate->add_flag("--terminating", o.terminating,
                     "Clients look no further for the paths it covers");
  delegate->add_option("--targets-key", o.targets_keys, "Targets secret key (repeatable)")
      ->required();
  delegate->add_option("--expires-days", o.expires_days, "Targets lifetime")->capture_default_str();
  auto* sign = repo->add_subcommand(
      "sign", "Add signatures to a root or targets version (threshold signing)");
  sign->add_option("dir", o.dir, "Repository directory")->required();
  sign->add_option("--role", o.role, "root or targets")->required();
  sign->add_option("--version", o.version, "Metadata version (default: the latest)");
  sign->add_option("--key", o.sign_keys, "Secret key to sign with (repeatable)")->required();
  auto* rotate = repo->add_subcommand(
      "rotate", "Write root N+1 with new keys or thresholds (signed by old and new root keys)");
  rotate->add_option("dir", o.dir, "Repository directory")->required();
  rotate->add_option("--root-key", o.root_keys, "Current root secret key (repeatable)")->required();
  rotate->add_option("--new-root-key", o.new_root_keys, "New root secret key (repeatable)");
  rotate->add_option("--root-threshold", o.root_threshold, "New root threshold")
      ->capture_default_str();
  rotate->add_option("--targets-key", o.targets_keys, "New targets secret key (repeatable)");
  rotate->add_option("--targets-threshold", o.targets_threshold, "New targets threshold")
      ->capture_default_str();
  rotate->add_option("--snapshot-key", o.snapshot_keys, "New snapshot secret key");
  rotate->add_option("--timestamp-key", o.timestamp_keys, "New timestamp secret key");
  rotate->add_option("--expires-days", o.expires_days, "Root lifetime")->capture_default_str();
  auto* publish =
      repo->add_subcommand("publish", "Sign a new snapshot and timestamp for the latest targets");
  publish->add_option("dir", o.dir, "Repository directory")->required();
  publish->add_option("--snapshot-key", o.snapshot_keys, "Snapshot secret key")->required();
  publish->add_option("--timestamp-key", o.timestamp_keys, "Timestamp secret key")->required();
  publish->add_option("--expires-days", o.online_expires_days, "Snapshot and timestamp lifetime")
      ->capture_default_str();

  auto* canonical = repo->add_subcommand(
      "canonical", "Write JSON files in TUF's canonical form (the bytes signatures cover)");
  canonical->add_option("files", o.files, "JSON files")->required()->check(CLI::ExistingFile);
  canonical->add_option("--out-dir", o.out_dir, "Where to write them (same names)")->required();

  auto* tuf_cmd =
      app.add_subcommand("tuf", "TUF client (the TUF conformance suite's command line)");
  tuf_cmd->require_subcommand(1);
  tuf_cmd->add_option("--metadata-dir", o.metadata_dir, "Trusted metadata directory")->required();
  tuf_cmd->add_option("--metadata-url", o.metadata_url, "Repository metadata URL");
  tuf_cmd->add_option("--target-name", o.target_name, "Target to download");
  tuf_cmd->add_option("--target-base-url", o.target_base_url, "Repository targets URL");
  tuf_cmd->add_option("--target-dir", o.target_dir, "Where to put the target");
  auto* tinit = tuf_cmd->add_subcommand("init", "Trust ROOT_FILE as the initial root");
  tinit->add_option("root_file", o.root_file, "root.json")->required()->check(CLI::ExistingFile);
  tuf_cmd->add_subcommand("refresh", "Update the trusted metadata");
  tuf_cmd->add_subcommand("download", "Refresh, then download --target-name into --target-dir");
}

int RunRepoCommand(CLI::App& app) {
  if (app.got_subcommand("tuf")) {
    try {
      return TufClient(app);
    } catch (const std::exception& e) {
      std::cerr << "outpost: " << e.what() << "\n";
      return 1;
    }
  }
  if (!app.got_subcommand("repo")) return -1;
  auto* repo = app.get_subcommand("repo");
  if (repo->got_subcommand("init")) return RepoInit();
  if (repo->got_subcommand("add")) return RepoAdd();
  if (repo->got_subcommand("publish")) return RepoPublish();
  if (repo->got_subcommand("sign")) return RepoSign();
  if (repo->got_subcommand("rotate")) return RepoRotate();
  if (repo->got_subcommand("delegate")) return RepoDelegate();
  if (repo->got_subcommand("canonical")) return RepoCanonical();
  return -1;
}

}  // namespace outpost
