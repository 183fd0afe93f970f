#include "update/tuf.h"

#include <fnmatch.h>

#include <ctime>
#include <iomanip>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/json_input.h"
#include "core/names.h"
#include "package/sha256.h"
#include "update/tuf_hashes.h"
#include "update/tuf_signer.h"

namespace outpost::tuf {
namespace {

using json = nlohmann::json;

// The fetcher bounds each role's length; this bounds what any one of them may expand into.
constexpr size_t kMaxMetadataBytes = 64u << 20;

[[noreturn]] void Denied(const std::string& what) {
  Fail(ErrorCode::kPermissionDenied, "tuf: " + what);
}
[[noreturn]] void Bad(const std::string& what) {
  Fail(ErrorCode::kInvalidArgument, "tuf: " + what);
}

// "1.x" or "1.x.y": the major version this client implements.
void CheckSpecVersion(const std::string& spec, const std::string& type) {
  size_t parts = 1;
  bool digits = !spec.empty() && spec.front() != '.' && spec.back() != '.';
  for (size_t i = 0; i < spec.size(); ++i) {
    if (spec[i] == '.') {
      digits = digits && spec[i - 1] != '.';
      ++parts;
    } else if (spec[i] < '0' || spec[i] > '9') {
      digits = false;
    }
  }
  if (!digits || parts < 2 || parts > 3 || spec.substr(0, spec.find('.')) != "1")
    Bad(type + ": spec_version '" + spec + "' is not 1.x");
}

struct Envelope {
  json signed_part;
  std::string canonical;                                        // what the signatures cover
  std::vector<std::pair<std::string, std::string>> signatures;  // keyid, raw signature
};

Envelope ParseEnvelope(const std::string& bytes, const std::string& type) {
  // Bounded before anything is copied: a mirror can send anything until the signatures hold.
  json j = ParseJson(bytes, JsonLimits::Document(kMaxMetadataBytes), "tuf: " + type);
  if (!j.is_object() || !j.contains("signed") || !j["signed"].is_object() ||
      !j.contains("signatures") || !j["signatures"].is_array()) {
    Bad(type + ": not a signed TUF metadata file");
  }
  Envelope e{j["signed"], CanonicalJson(j["signed"]), {}};
  if (e.signed_part.value("_type", "") != type)
    Bad(type + ": _type is '" + e.signed_part.value("_type", "") + "'");
  CheckSpecVersion(e.signed_part.value("spec_version", ""), type);
  for (const auto& s : j["signatures"]) {
    if (!s.is_object() || !s.contains("keyid") || !s["keyid"].is_string() || !s.contains("sig") ||
        !s["sig"].is_string()) {
      Bad(type + ": malformed signature entry");
    }
    std::string raw;
    try {
      raw = FromHex(s["sig"].get<std::string>(), "signature");
    } catch (const Error&) {
      raw.clear();  // counts as a bad signature below
    }
    for (const auto& [seen, unused] : e.signatures)
      if (seen == s["keyid"].get<std::string>())
        Bad(type + ": two signatures by key " + seen.substr(0, 12) + " (each key signs once)");
    e.signatures.emplace_back(s["keyid"].get<std::string>(), raw);
  }
  return e;
}

int64_t Version(const json& s, const std::string& type) {
  if (!s.contains("version") || !s["version"].is_number_integer() ||
      s["version"].get<int64_t>() < 1) {
    Bad(type + ": version must be an integer >= 1");
  }
  return s["version"].get<int64_t>();
}

Clock::time_point ParseExpiry(const json& s, const std::string& type) {
  if (!s.contains("expires") || !s["expires"].is_string()) Bad(type + ": missing expires");
  std::tm tm{};
  std::istringstream in(s["expires"].get<std::string>());
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
  if (in.fail())
    Bad(type + ": expires '" + s["expires"].get<std::string>() + "' is not YYYY-MM-DDTHH:MM:SSZ");
  // The clock counts nanoseconds in 64 bits (years 1678-2262): refuse what it cannot hold.
  if (tm.tm_year + 1900 < 1970 || tm.tm_year + 1900 > 2200)
    Bad(type + ": expires '" + s["expires"].get<std::string>() + "' is out of range (1970-2200)");
  return Clock::from_time_t(timegm(&tm));
}

MetaInfo ParseMetaInfo(const json& m, const std::string& where) {
  if (!m.is_object()) Bad(where + ": meta entry must be an object");
  MetaInfo info;
  info.version = Version(m, where);
  if (m.contains("length")) {
    if (!m["length"].is_number_unsigned()) Bad(where + ": length must be a non-negative integer");
    info.length = m["length"].get<uint64_t>();
  }
  if (m.contains("hashes")) {
    if (!m["hashes"].is_object() || m["hashes"].empty())
      Bad(where + ": hashes must be a non-empty object");
    for (const auto& [alg, h] : m["hashes"].items()) {
      if (!h.is_string()) Bad(where + ": hash must be a string");
      info.hashes[alg] = h.get<std::string>();
    }
  }
  return info;
}

void CheckLengthAndHashes(const std::string& bytes, const MetaInfo& expected,
                          const std::string& what) {
  if (expected.length && bytes.size() != *expected.length) {
    Denied(what + ": " + std::to_string(bytes.size()) + " bytes where " +
           std::to_string(*expected.length) + " were signed for (mix-and-match?)");
  }
  try {
    CheckHashes(bytes, expected.hashes, what);
  } catch (const Error& e) {
    Fail(e.code(), std::string(e.what()) + " (mix-and-match?)");
  }
}

// 5.4.4 / 5.5.6 / 5.6.4: metadata past its expiry is refused (indefinite freeze).
void CheckFresh(const std::string& role, int64_t version, Clock::time_point expires,
                Clock::time_point now) {
  if (expires <= now)
    Denied(role + " v" + std::to_string(version) + " expired at " + FormatExpiry(expires) +
           " (freeze)");
}

// Counts the distinct keys of `role` (from `keys`) whose signatures on `e` verify. A bad or
// missing signature is not an error by itself: the threshold decides.
void VerifyRole(const Envelope& e, const std::map<std::string, Key>& keys, const Role& role,
                const std::string& role_name, const std::string& what) {
  int valid = 0;
  std::string detail;
  for (const auto& keyid : role.keyids) {
    auto sig = std::find_if(e.signatures.begin(), e.signatures.end(),
                            [&](const auto& s) { return s.first == keyid; });
    if (sig == e.signatures.end()) continue;
    auto key = keys.find(keyid);
    if (key == keys.end()) {
      detail += "; " + keyid.substr(0, 12) + ": no such key";
    } else if (!key->second.Verify(e.canonical, sig->second)) {
      detail += "; " + keyid.substr(0, 12) + ": bad signature";
    } else {
      ++valid;
    }
  }
  for (const auto& [keyid, sig] : e.signatures)
    if (std::find(role.keyids.begin(), role.keyids.end(), keyid) == role.keyids.end())
      detail += "; " + keyid.substr(0, 12) + ": not a " + role_name + " key";
  if (valid < role.threshold)
    Denied(what + ": " + std::to_string(valid) + " of " + std::to_string(role.threshold) +
           " required signatures from the " + role_name + " role" + detail);
}

void VerifyRole(const Envelope& e, const Root& root, const std::string& role_name,
                const std::string& what) {
  auto role = root.roles.find(role_name);
  if (role == root.roles.end()) Bad("root defines no '" + role_name + "' role");
  VerifyRole(e, root.keys, role->second, role_name, what);
}

Role ParseRole(const json& j, const std::string& where) {
  if (!j.is_object()) Bad(where + ": a role must be an object");
  Role out;
  if (!j.contains("threshold") || !j["threshold"].is_number_integer() ||
      j["threshold"].get<int64_t>() < 1 || j["threshold"].get<int64_t>() > 1000)
    Bad(where + ": needs a threshold >= 1");
  out.threshold = j["threshold"].get<int>();
  if (!j.contains("keyids") || !j["keyids"].is_array()) Bad(where + ": keyids must be an array");
  std::set<std::string> seen;
  for (const auto& k : j["keyids"]) {
    if (!k.is_string()) Bad(where + ": keyids must be strings");
    if (!seen.insert(k.get<std::string>()).second)
      Bad(where + ": key " + k.get<std::string>().substr(0, 12) + " is listed twice");
    out.keyids.push_back(k.get<std::string>());
  }
  return out;
}

std::map<std::string, Key> ParseKeys(const json& keys, const std::string& where) {
  if (!keys.is_object()) Bad(where + ": keys must be an object");
  std::map<std::string, Key> out;
  for (const auto& [keyid, k] : keys.items())
    out.emplace(keyid, Key::Parse(k, where + " key " + keyid));
  return out;
}

std::vector<std::string> StringList(const json& j, const std::string& where) {
  if (!j.is_array()) Bad(where + " must be an array of strings");
  std::vector<std::string> out;
  for (const auto& v : j) {
    if (!v.is_string()) Bad(where + " must be an array of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

bool IsTopLevelRole(const std::string& name) {
  return name == "root" || name == "targets" || name == "snapshot" || name == "timestamp";
}

Delegations ParseDelegations(const json& d) {
  if (!d.is_object()) Bad("targets: delegations must be an object");
  Delegations out;
  out.keys = ParseKeys(d.value("keys", json::object()), "delegations");
  const bool roles = d.contains("roles"), succinct = d.contains("succinct_roles");
  if (roles == succinct) Bad("delegations: exactly one of roles and succinct_roles");
  if (roles) {
    if (!d["roles"].is_array()) Bad("delegations: roles must be an array");
    std::set<std::string> names;
    for (const auto& r : d["roles"]) {
      DelegatedRole role;
      static_cast<Role&>(role) = ParseRole(r, "delegated role");
      if (!r.contains("name") || !r["name"].is_string() || r["name"].get<std::string>().empty())
        Bad("delegations: a role needs a name");
      role.name = r["name"].get<std::string>();
      if (IsTopLevelRole(role.name)) Bad("delegations: '" + role.name + "' is a top-level role");
      if (!names.insert(role.name).second) Bad("delegations: role '" + role.name + "' twice");
      if (!r.contains("terminating") || !r["terminating"].is_boolean())
        Bad("delegations: role '" + role.name + "' needs terminating true or false");
      role.terminating = r["terminating"].get<bool>();
      if (r.contains("paths") == r.contains("path_hash_prefixes"))
        Bad("delegations: role '" + role.name + "' needs paths or path_hash_prefixes");
      if (r.contains("paths")) role.paths = StringList(r["paths"], "paths");
      if (r.contains("path_hash_prefixes"))
        role.path_hash_prefixes = StringList(r["path_hash_prefixes"], "path_hash_prefixes");
      out.roles.push_back(std::move(role));
    }
  } else {
    const json& r = d["succinct_roles"];
    SuccinctRoles s;
    static_cast<Role&>(s) = ParseRole(r, "succinct_roles");
    if (!r.contains("bit_length") || !r["bit_length"].is_number_integer() ||
        r["bit_length"].get<int64_t>() < 1 || r["bit_length"].get<int64_t>() > 32)
      Bad("succinct_roles: bit_length must be 1..32");
    s.bit_length = r["bit_length"].get<int>();
    if (!r.contains("name_prefix") || !r["name_prefix"].is_string())
      Bad("succinct_roles: name_prefix must be a string");
    s.name_prefix = r["name_prefix"].get<std::string>();
    out.succinct_roles = std::move(s);
  }
  return out;
}

std::map<std::string, TargetInfo> ParseTargetEntries(const json& s) {
  const json& targets = s.contains("targets") ? s["targets"] : json::object();
  if (!targets.is_object()) Bad("targets: targets must be an object");
  std::map<std::string, TargetInfo> out;
  for (const auto& [path, info] : targets.items()) {
    if (!info.is_object() || !info.contains("length") || !info["length"].is_number_unsigned() ||
        !info.contains("hashes") || !info["hashes"].is_object() || info["hashes"].empty())
      Bad("targets: '" + path + "' needs a length and hashes");
    TargetInfo ti{info["length"].get<uint64_t>(), {}, info.value("custom", json::object())};
    for (const auto& [alg, h] : info["hashes"].items()) {
      if (!h.is_string()) Bad("targets: '" + path + "': hashes must be strings");
      ti.hashes[alg] = h.get<std::string>();
    }
    out[path] = std::move(ti);
  }
  return out;
}

Targets ParseTargets(const json& s) {
  Targets t;
  t.version = Version(s, "targets");
  t.expires = ParseExpiry(s, "targets");
  t.targets = ParseTargetEntries(s);
  if (s.contains("delegations")) t.delegations = ParseDelegations(s["delegations"]);
  return t;
}

Root ParseRoot(const json& s) {
  Root r;
  r.version = Version(s, "root");
  r.expires = ParseExpiry(s, "root");
  if (s.contains("consistent_snapshot")) {
    if (!s["consistent_snapshot"].is_boolean()) Bad("root: consistent_snapshot must be a boolean");
    r.consistent_snapshot = s["consistent_snapshot"].get<bool>();
  }
  if (!s.contains("keys")) Bad("root: keys must be an object");
  r.keys = ParseKeys(s["keys"], "root");
  if (!s.contains("roles") || !s["roles"].is_object()) Bad("root: roles must be an object");
  for (const auto& [name, role] : s["roles"].items())
    if (!IsTopLevelRole(name)) Bad("root: '" + name + "' is not a top-level role");
  for (const char* name : {"root", "targets", "snapshot", "timestamp"}) {
    if (!s["roles"].contains(name)) Bad(std::string("root: role '") + name + "' is missing");
    r.roles[name] = ParseRole(s["roles"][name], std::string("root: role '") + name + "'");
  }
  return r;
}

// Runs `parse`; a field of the wrong type deep inside (a JSON type error) is malformed metadata,
// refused like any other parse failure.
template <typename F>
void AsMetadataError(const char* role, F&& parse) {
  try {
    parse();
  } catch (const json::exception& e) {
    Bad(std::string(role) + ": malformed metadata: " + e.what());
  }
}

}  // namespace

namespace {

void AppendCanonical(const json& j, std::string& out) {
  switch (j.type()) {
    case json::value_t::object: {
      // nlohmann's objects are ordered by byte comparison of UTF-8 keys: code point order,
      // which is how Python sorts them.
      out += '{';
      bool first = true;
      for (const auto& [key, value] : j.items()) {
        if (!first) out += ',';
        first = false;
        AppendCanonical(key, out);
        out += ':';
        AppendCanonical(value, out);
      }
      out += '}';
      break;
    }
    case json::value_t::array: {
      out += '[';
      for (size_t i = 0; i < j.size(); ++i) {
        if (i) out += ',';
        AppendCanonical(j[i], out);
      }
      out += ']';
      break;
    }
    case json::value_t::string:
      out += '"';
      for (char c : j.get_ref<const std::string&>()) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
      }
      out += '"';
      break;
    case json::value_t::boolean:
      out += j.get<bool>() ? "true" : "false";
      break;
    case json::value_t::null:
      out += "null";
      break;
    case json::value_t::number_integer:
      out += std::to_string(j.get<int64_t>());
      break;
    case json::value_t::number_unsigned:
      out += std::to_string(j.get<uint64_t>());
      break;
    default:
      Bad("canonical JSON has no floating-point numbers or binary values");
  }
}

}  // namespace

std::string CanonicalJson(const json& j) {
  std::string out;
  AppendCanonical(j, out);
  return out;
}

json KeyJson(const std::string& raw_public_key) {
  return {{"keytype", "ed25519"},
          {"scheme", "ed25519"},
          {"keyval", {{"public", ToHex(raw_public_key)}}}};
}

std::string KeyIdOf(const std::string& raw_public_key) {
  return Sha256Hex(CanonicalJson(KeyJson(raw_public_key)));
}

json SignEnvelope(const json& signed_part, const std::vector<const SigningKey*>& keys) {
  std::vector<Signer> signers;
  for (const auto* k : keys) signers.push_back(Signer::FromEd25519(*k));
  std::vector<const Signer*> ptrs;
  for (const auto& s : signers) ptrs.push_back(&s);
  return SignEnvelope(signed_part, ptrs);
}

std::string FormatExpiry(Clock::time_point t) { return FormatUtc(Clock::to_time_t(t)); }

Targets VerifyTargets(const std::string& root_bytes, const std::string& targets_bytes,
                      Clock::time_point now) {
  Targets t;
  AsMetadataError("targets", [&] {
    Root root = ParseRoot(ParseEnvelope(root_bytes, "root").signed_part);
    Envelope e = ParseEnvelope(targets_bytes, "targets");
    VerifyRole(e, root, "targets", "targets");
    t = ParseTargets(e.signed_part);
    for (const auto& [path, info] : t.targets)
      if (!info.hashes.count("sha256")) Bad("targets: '" + path + "' needs a sha256");
    CheckFresh("targets", t.version, t.expires, now);
  });
  return t;
}

Targets VerifyDelegatedTargets(const Targets& delegator, const std::string& role,
                               const std::string& bytes, Clock::time_point now) {
  Targets t;
  AsMetadataError("targets", [&] {
    const Role* r = delegator.delegations ? delegator.delegations->Find(role) : nullptr;
    if (!r) Denied(role + " is not a delegated role");
    Envelope e = ParseEnvelope(bytes, "targets");
    VerifyRole(e, delegator.delegations->keys, *r, role, role);
    t = ParseTargets(e.signed_part);
    for (const auto& [path, info] : t.targets) {
      auto roles = delegator.delegations->RolesFor(path);
      if (std::none_of(roles.begin(), roles.end(), [&](const auto& p) { return p.first == role; }))
        Denied(role + ": '" + path + "' is outside the paths delegated to it");
    }
    CheckFresh(role, t.version, t.expires, now);
  });
  return t;
}

Root ParseRootMetadata(const std::string& root_bytes) {
  Root r;
  AsMetadataError("root", [&] { r = ParseRoot(ParseEnvelope(root_bytes, "root").signed_part); });
  return r;
}

namespace {
json MetaEntry(const std::string& bytes, int64_t version) {
  return {
      {"version", version}, {"length", bytes.size()}, {"hashes", {{"sha256", Sha256Hex(bytes)}}}};
}
}  // namespace

std::string SignTimestamp(const std::string& snapshot_bytes, int64_t snapshot_version,
                          int64_t timestamp_version, Clock::time_point expires,
                          const Signer& timestamp_key) {
  json timestamp = {{"_type", "timestamp"},
                    {"spec_version", "1.0.31"},
                    {"version", timestamp_version},
                    {"expires", FormatExpiry(expires)},
                    {"meta", {{"snapshot.json", MetaEntry(snapshot_bytes, snapshot_version)}}}};
  return SignEnvelope(timestamp, {&timestamp_key}).dump(1) + "\n";
}

OnlineRoles SignOnlineRoles(const std::map<std::string, RoleFile>& targets_roles,
                            int64_t snapshot_version, int64_t timestamp_version,
                            Clock::time_point expires, const Signer& snapshot_key,
                            const Signer& timestamp_key) {
  json meta = json::object();
  for (const auto& [role, file] : targets_roles)
    meta[role + ".json"] = MetaEntry(file.bytes, file.version);
  json snapshot = {{"_type", "snapshot"},
                   {"spec_version", "1.0.31"},
                   {"version", snapshot_version},
                   {"expires", FormatExpiry(expires)},
                   {"meta", meta}};
  OnlineRoles out;
  out.snapshot = SignEnvelope(snapshot, {&snapshot_key}).dump(1) + "\n";
  out.timestamp =
      SignTimestamp(out.snapshot, snapshot_version, timestamp_version, expires, timestamp_key);
  return out;
}

TrustedSet::TrustedSet(const std::string& root_bytes, Clock::time_point now) : now_(now) {
  AsMetadataError("root", [&] {
    Envelope e = ParseEnvelope(root_bytes, "root");
    root_ = ParseRoot(e.signed_part);
    VerifyRole(e, root_, "root", "root");  // the trusted root must sign itself
  });
}

void TrustedSet::UpdateRoot(const std::string& bytes) {
  AsMetadataError("root", [&] {
    if (timestamp_) Bad("root cannot be updated after the timestamp");
    Envelope e = ParseEnvelope(bytes, "root");
    Root next = ParseRoot(e.signed_part);
    // 5.3.4: signed by a threshold of the old root's keys and of the new root's own keys.
    VerifyRole(e, root_, "root",
               "root v" + std::to_string(next.version) + " (by the trusted root's keys)");
    if (next.version != root_.version + 1) {
      Denied("root: version " + std::to_string(next.version) + " where " +
             std::to_string(root_.version + 1) + " was expected (rollback or skipped version)");
    }
    VerifyRole(e, next, "root", "root v" + std::to_string(next.version) + " (by its own keys)");
    root_ = std::move(next);
  });
}

void TrustedSet::CheckRootNotExpired() const {
  if (root_.expires <= now_)
    Denied("root v" + std::to_string(root_.version) + " expired at " + FormatExpiry(root_.expires));
}

bool TrustedSet::UpdateTimestamp(const std::string& bytes) {
  bool kept = false;
  AsMetadataError("timestamp", [&] {
    if (snapshot_) Bad("timestamp cannot be updated after the snapshot");
    CheckRootNotExpired();
    Envelope e = ParseEnvelope(bytes, "timestamp");
    VerifyRole(e, root_, "timestamp", "timestamp");
    Timestamp t;
    t.version = Version(e.signed_part, "timestamp");
    t.expires = ParseExpiry(e.signed_part, "timestamp");
    const json& meta = e.signed_part.contains("meta") ? e.signed_part["meta"] : json::object();
    if (!meta.is_object() || !meta.contains("snapshot.json"))
      Bad("timestamp: meta has no snapshot.json");
    t.snapshot = ParseMetaInfo(meta["snapshot.json"], "timestamp meta snapshot.json");
    if (timestamp_) {
      if (t.version < timestamp_->version) {
        Denied("timestamp: version " + std::to_string(t.version) + " is older than the trusted " +
               std::to_string(timestamp_->version) + " (rollback)");
      }
      if (t.version == timestamp_->version) {
        kept = true;  // the same version again: whatever it says, the trusted one stands
        return;
      }
      if (t.snapshot.version < timestamp_->snapshot.version) {
        Denied("timestamp: names snapshot version " + std::to_string(t.snapshot.version) +
               ", older than the trusted " + std::to_string(timestamp_->snapshot.version) +
               " (rollback)");
      }
    }
    timestamp_ = t;  // trusted for rollback checks even when expired
    CheckFinalTimestamp();
  });
  return !kept;
}

void TrustedSet::CheckFinalTimestamp() const {
  CheckFresh("timestamp", timestamp_->version, timestamp_->expires, now_);
}

void TrustedSet::UpdateSnapshot(const std::string& bytes, bool trusted) {
  AsMetadataError("snapshot", [&] {
    if (!timestamp_) Bad("snapshot needs a trusted timestamp first");
    if (!targets_.empty()) Bad("snapshot cannot be updated after the targets");
    CheckFinalTimestamp();
    if (!trusted) CheckLengthAndHashes(bytes, timestamp_->snapshot, "snapshot");
    Envelope e = ParseEnvelope(bytes, "snapshot");
    VerifyRole(e, root_, "snapshot", "snapshot");
    Snapshot s;
    s.version = Version(e.signed_part, "snapshot");
    s.expires = ParseExpiry(e.signed_part, "snapshot");
    const json& meta = e.signed_part.contains("meta") ? e.signed_part["meta"] : json::object();
    if (!meta.is_object()) Bad("snapshot: meta must be an object");
    for (const auto& [name, info] : meta.items())
      s.meta[name] = ParseMetaInfo(info, "snapshot meta " + name);
    if (snapshot_) {
      for (const auto& [name, old] : snapshot_->meta) {
        auto now = s.meta.find(name);
        if (now == s.meta.end())
          Denied("snapshot: " + name + " disappeared from the new snapshot (rollback)");
        if (now->second.version < old.version) {
          Denied("snapshot: " + name + " version " + std::to_string(now->second.version) +
                 " is older than the trusted " + std::to_string(old.version) + " (rollback)");
        }
      }
    }
    snapshot_ = s;  // trusted for rollback checks even when not valid as the final one
    CheckFinalSnapshot();
  });
}

void TrustedSet::CheckFinalSnapshot() const {
  CheckFresh("snapshot", snapshot_->version, snapshot_->expires, now_);
  if (snapshot_->version != timestamp_->snapshot.version) {
    Denied("snapshot: version " + std::to_string(snapshot_->version) + " but the timestamp names " +
           std::to_string(timestamp_->snapshot.version) + " (mix-and-match)");
  }
}

void TrustedSet::UpdateDelegatedTargets(const std::string& bytes, const std::string& role,
                                        const std::string& delegator) {
  AsMetadataError("targets", [&] {
    if (!snapshot_) Bad("targets needs a trusted snapshot first");
    CheckFinalSnapshot();
    auto meta = snapshot_->meta.find(role + ".json");
    if (meta == snapshot_->meta.end()) Denied("the snapshot does not list " + role + ".json");
    CheckLengthAndHashes(bytes, meta->second, role);
    Envelope e = ParseEnvelope(bytes, "targets");
    if (delegator == "root") {
      VerifyRole(e, root_, "targets", "targets");
    } else {
      const Targets* parent = targets(delegator);
      if (!parent) Bad(role + ": its delegator " + delegator + " is not trusted yet");
      const Role* r = parent->delegations ? parent->delegations->Find(role) : nullptr;
      if (!r) Bad(role + " is not delegated by " + delegator);
      VerifyRole(e, parent->delegations->keys, *r, role, role);
    }
    Targets t = ParseTargets(e.signed_part);
    if (t.version != meta->second.version) {
      Denied(role + ": version " + std::to_string(t.version) + " but the snapshot names " +
             std::to_string(meta->second.version) + " (mix-and-match)");
    }
    CheckFresh(role, t.version, t.expires, now_);
    targets_[role] = std::move(t);
  });
}

const Targets* TrustedSet::targets(const std::string& role) const {
  auto it = targets_.find(role);
  return it == targets_.end() ? nullptr : &it->second;
}

// --- delegation lookups ---------------------------------------------------------------------

namespace {

// Shell-style patterns segment by segment ("models/*/onnx" does not match "models/a/b/onnx"),
// as python-tuf matches them with fnmatch.
bool MatchesPattern(const std::string& target, const std::string& pattern) {
  auto split = [](const std::string& s) {
    std::vector<std::string> parts;
    size_t at = 0;
    while (true) {
      size_t slash = s.find('/', at);
      parts.push_back(s.substr(at, slash - at));
      if (slash == std::string::npos) return parts;
      at = slash + 1;
    }
  };
  auto t = split(target), p = split(pattern);
  if (t.size() != p.size()) return false;
  for (size_t i = 0; i < t.size(); ++i)
    if (::fnmatch(p[i].c_str(), t[i].c_str(), FNM_NOESCAPE) != 0) return false;
  return true;
}

}  // namespace

bool DelegatedRole::IsDelegatedPath(const std::string& target) const {
  if (path_hash_prefixes) {
    const std::string hash = Sha256Hex(target);
    for (const auto& prefix : *path_hash_prefixes)
      if (hash.rfind(prefix, 0) == 0) return true;
    return false;
  }
  if (paths)
    for (const auto& pattern : *paths)
      if (MatchesPattern(target, pattern)) return true;
  return false;
}

namespace {
size_t SuffixLength(int bit_length) {
  uint64_t last = (uint64_t{1} << bit_length) - 1;
  size_t n = 1;
  while (last >>= 4) ++n;
  return n;
}
}  // namespace

std::string SuccinctRoles::RoleFor(const std::string& target) const {
  const std::string digest = FromHex(Sha256Hex(target), "hash");
  uint32_t first = (uint32_t(uint8_t(digest[0])) << 24) | (uint32_t(uint8_t(digest[1])) << 16) |
                   (uint32_t(uint8_t(digest[2])) << 8) | uint32_t(uint8_t(digest[3]));
  uint64_t bin = first >> (32 - bit_length);
  std::string hex = ToHex(std::string{char(bin >> 24), char(bin >> 16), char(bin >> 8), char(bin)});
  return name_prefix + "-" + hex.substr(hex.size() - SuffixLength(bit_length));
}

bool SuccinctRoles::IsRole(const std::string& name) const {
  const std::string prefix = name_prefix + "-";
  if (name.rfind(prefix, 0) != 0) return false;
  const std::string suffix = name.substr(prefix.size());
  if (suffix.size() != SuffixLength(bit_length)) return false;
  uint64_t n = 0;
  for (char c : suffix) {
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return false;
    n = n * 16 + static_cast<uint64_t>(v);
  }
  return n < (uint64_t{1} << bit_length);
}

std::vector<std::pair<std::string, bool>> Delegations::RolesFor(const std::string& target) const {
  std::vector<std::pair<std::string, bool>> out;
  if (succinct_roles) {
    out.emplace_back(succinct_roles->RoleFor(target), true);
    return out;
  }
  for (const auto& r : roles)
    if (r.IsDelegatedPath(target)) out.emplace_back(r.name, r.terminating);
  return out;
}

const Role* Delegations::Find(const std::string& name) const {
  if (succinct_roles) return succinct_roles->IsRole(name) ? &*succinct_roles : nullptr;
  for (const auto& r : roles)
    if (r.name == name) return &r;
  return nullptr;
}

const std::string& TargetInfo::NameHash() const {
  auto it = hashes.find("sha256");
  return it != hashes.end() ? it->second : hashes.begin()->second;
}

}  // namespace outpost::tuf
