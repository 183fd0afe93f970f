#include "update/tuf.h"

#include <ctime>
#include <iomanip>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/json_input.h"
#include "core/names.h"
#include "package/sha256.h"

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
  std::string spec = e.signed_part.value("spec_version", "");
  if (spec.rfind("1.", 0) != 0) Bad(type + ": spec_version '" + spec + "' is not 1.x");
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
    if (!m["hashes"].is_object()) Bad(where + ": hashes must be an object");
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
  if (expected.hashes.empty()) return;
  auto it = expected.hashes.find("sha256");
  if (it == expected.hashes.end()) Denied(what + ": no sha256 among the signed hashes");
  if (Sha256Hex(bytes) != it->second)
    Denied(what + ": sha256 differs from the one signed for it (mix-and-match?)");
}

// 5.4.4 / 5.5.6 / 5.6.4: metadata past its expiry is refused (indefinite freeze).
void CheckFresh(const std::string& role, int64_t version, Clock::time_point expires,
                Clock::time_point now) {
  if (expires <= now)
    Denied(role + " v" + std::to_string(version) + " expired at " + FormatExpiry(expires) +
           " (freeze)");
}

// Counts distinct keys of `role` (as `root` defines it) that signed `e`.
void VerifyRole(const Envelope& e, const Root& root, const std::string& role_name,
                const std::string& what) {
  auto role = root.roles.find(role_name);
  if (role == root.roles.end()) Bad("root defines no '" + role_name + "' role");
  std::set<std::string> valid;
  std::string detail;
  for (const auto& [keyid, sig] : e.signatures) {
    bool in_role = std::find(role->second.keyids.begin(), role->second.keyids.end(), keyid) !=
                   role->second.keyids.end();
    auto key = root.keys.find(keyid);
    if (!in_role || key == root.keys.end()) {
      detail += "; " + keyid.substr(0, 12) + ": not a " + role_name + " key";
    } else if (!VerifySignature(key->second, e.canonical, sig)) {
      detail += "; " + keyid.substr(0, 12) + ": bad signature";
    } else {
      valid.insert(keyid);
    }
  }
  if (static_cast<int>(valid.size()) < role->second.threshold) {
    Denied(what + ": " + std::to_string(valid.size()) + " of " +
           std::to_string(role->second.threshold) + " required signatures from the " + role_name +
           " role" + detail);
  }
}

Root ParseRoot(const json& s) {
  Root r;
  r.version = Version(s, "root");
  r.expires = ParseExpiry(s, "root");
  r.consistent_snapshot = s.value("consistent_snapshot", false);
  if (!s.contains("keys") || !s["keys"].is_object()) Bad("root: keys must be an object");
  for (const auto& [keyid, k] : s["keys"].items()) {
    if (!k.is_object() || k.value("keytype", "") != "ed25519" ||
        k.value("scheme", "") != "ed25519" || !k.contains("keyval") || !k["keyval"].is_object() ||
        !k["keyval"].contains("public") || !k["keyval"]["public"].is_string()) {
      continue;  // keys of other types may appear; they can never count toward a threshold here
    }
    std::string raw = FromHex(k["keyval"]["public"].get<std::string>(), "public key");
    if (raw.size() != 32) Bad("root: ed25519 public key " + keyid + " is not 32 bytes");
    if (KeyIdOf(raw) != keyid) Bad("root: key id " + keyid + " does not match its key");
    r.keys[keyid] = PublicKey{keyid, raw, ""};
  }
  if (!s.contains("roles") || !s["roles"].is_object()) Bad("root: roles must be an object");
  for (const char* name : {"root", "targets", "snapshot", "timestamp"}) {
    if (!s["roles"].contains(name)) Bad(std::string("root: role '") + name + "' is missing");
    const auto& role = s["roles"][name];
    Role out;
    if (!role.contains("threshold") || !role["threshold"].is_number_integer() ||
        role["threshold"].get<int>() < 1) {
      Bad(std::string("root: role '") + name + "' needs a threshold >= 1");
    }
    out.threshold = role["threshold"].get<int>();
    for (const auto& k : role.value("keyids", json::array())) {
      if (k.is_string()) out.keyids.push_back(k.get<std::string>());
    }
    r.roles[name] = out;
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

std::string CanonicalJson(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::strict);
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
  std::string canonical = CanonicalJson(signed_part);
  json sigs = json::array();
  for (const auto* k : keys)
    sigs.push_back({{"keyid", KeyIdOf(k->pub.public_key)}, {"sig", ToHex(Sign(*k, canonical))}});
  return {{"signed", signed_part}, {"signatures", sigs}};
}

std::string FormatExpiry(Clock::time_point t) { return FormatUtc(Clock::to_time_t(t)); }

Targets VerifyTargets(const std::string& root_bytes, const std::string& targets_bytes,
                      Clock::time_point now) {
  Targets t;
  AsMetadataError("targets", [&] {
    Root root = ParseRoot(ParseEnvelope(root_bytes, "root").signed_part);
    Envelope e = ParseEnvelope(targets_bytes, "targets");
    VerifyRole(e, root, "targets", "targets");
    t.version = Version(e.signed_part, "targets");
    t.expires = ParseExpiry(e.signed_part, "targets");
    const json targets = e.signed_part.value("targets", json::object());
    if (!targets.is_object()) Bad("targets: targets must be an object");
    for (const auto& [path, info] : targets.items()) {
      if (!info.is_object() || !info.contains("length") || !info["length"].is_number_unsigned() ||
          !info.contains("hashes") || !info["hashes"].is_object() ||
          !info["hashes"].contains("sha256") || !info["hashes"]["sha256"].is_string())
        Bad("targets: '" + path + "' needs a length and a sha256");
      TargetInfo ti{info["length"].get<uint64_t>(), {}, info.value("custom", json::object())};
      for (const auto& [alg, h] : info["hashes"].items())
        if (h.is_string()) ti.hashes[alg] = h.get<std::string>();
      t.targets[path] = std::move(ti);
    }
    CheckFresh("targets", t.version, t.expires, now);
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
                          const SigningKey& timestamp_key) {
  json timestamp = {{"_type", "timestamp"},
                    {"spec_version", "1.0.31"},
                    {"version", timestamp_version},
                    {"expires", FormatExpiry(expires)},
                    {"meta", {{"snapshot.json", MetaEntry(snapshot_bytes, snapshot_version)}}}};
  return SignEnvelope(timestamp, {&timestamp_key}).dump(1) + "\n";
}

OnlineRoles SignOnlineRoles(const std::string& targets_bytes, int64_t targets_version,
                            int64_t snapshot_version, int64_t timestamp_version,
                            Clock::time_point expires, const SigningKey& snapshot_key,
                            const SigningKey& timestamp_key) {
  json snapshot = {{"_type", "snapshot"},
                   {"spec_version", "1.0.31"},
                   {"version", snapshot_version},
                   {"expires", FormatExpiry(expires)},
                   {"meta", {{"targets.json", MetaEntry(targets_bytes, targets_version)}}}};
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
    accepted_["root"] = root_bytes;
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
    VerifyRole(e, next, "root", "root v" + std::to_string(next.version) + " (by its own keys)");
    if (next.version != root_.version + 1) {
      Denied("root: version " + std::to_string(next.version) + " where " +
             std::to_string(root_.version + 1) + " was expected (rollback or skipped version)");
    }
    root_ = std::move(next);
    accepted_["root"] = bytes;
  });
}

void TrustedSet::CheckRootNotExpired() const {
  if (root_.expires <= now_)
    Denied("root v" + std::to_string(root_.version) + " expired at " + FormatExpiry(root_.expires));
}

void TrustedSet::UpdateTimestamp(const std::string& bytes, bool from_cache) {
  AsMetadataError("timestamp", [&] {
    if (snapshot_) Bad("timestamp cannot be updated after the snapshot");
    CheckRootNotExpired();
    Envelope e = ParseEnvelope(bytes, "timestamp");
    VerifyRole(e, root_, "timestamp", "timestamp");
    Timestamp t;
    t.version = Version(e.signed_part, "timestamp");
    t.expires = ParseExpiry(e.signed_part, "timestamp");
    const json& meta = e.signed_part.value("meta", json::object());
    if (!meta.contains("snapshot.json")) Bad("timestamp: meta has no snapshot.json");
    t.snapshot = ParseMetaInfo(meta["snapshot.json"], "timestamp meta snapshot.json");
    if (timestamp_) {
      if (t.version < timestamp_->version) {
        Denied("timestamp: version " + std::to_string(t.version) + " is older than the trusted " +
               std::to_string(timestamp_->version) + " (rollback)");
      }
      if (t.snapshot.version < timestamp_->snapshot.version) {
        Denied("timestamp: names snapshot version " + std::to_string(t.snapshot.version) +
               ", older than the trusted " + std::to_string(timestamp_->snapshot.version) +
               " (rollback)");
      }
    }
    if (!from_cache) CheckFresh("timestamp", t.version, t.expires, now_);
    timestamp_ = t;
    accepted_["timestamp"] = bytes;
  });
}

void TrustedSet::UpdateSnapshot(const std::string& bytes, bool from_cache) {
  AsMetadataError("snapshot", [&] {
    if (!timestamp_) Bad("snapshot needs a trusted timestamp first");
    if (targets_) Bad("snapshot cannot be updated after the targets");
    if (!from_cache) CheckLengthAndHashes(bytes, timestamp_->snapshot, "snapshot");
    Envelope e = ParseEnvelope(bytes, "snapshot");
    VerifyRole(e, root_, "snapshot", "snapshot");
    Snapshot s;
    s.version = Version(e.signed_part, "snapshot");
    s.expires = ParseExpiry(e.signed_part, "snapshot");
    const json& meta = e.signed_part.value("meta", json::object());
    if (!meta.is_object()) Bad("snapshot: meta must be an object");
    for (const auto& [name, info] : meta.items())
      s.meta[name] = ParseMetaInfo(info, "snapshot meta " + name);
    if (!from_cache && s.version != timestamp_->snapshot.version) {
      Denied("snapshot: version " + std::to_string(s.version) + " but the timestamp names " +
             std::to_string(timestamp_->snapshot.version) + " (mix-and-match)");
    }
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
    if (!from_cache) CheckFresh("snapshot", s.version, s.expires, now_);
    snapshot_ = s;
    accepted_["snapshot"] = bytes;
  });
}

void TrustedSet::UpdateTargets(const std::string& bytes) {
  AsMetadataError("targets", [&] {
    if (!snapshot_) Bad("targets needs a trusted snapshot first");
    auto meta = snapshot_->meta.find("targets.json");
    if (meta == snapshot_->meta.end()) Denied("snapshot does not list targets.json");
    CheckLengthAndHashes(bytes, meta->second, "targets");
    Envelope e = ParseEnvelope(bytes, "targets");
    VerifyRole(e, root_, "targets", "targets");
    Targets t;
    t.version = Version(e.signed_part, "targets");
    t.expires = ParseExpiry(e.signed_part, "targets");
    if (t.version != meta->second.version) {
      Denied("targets: version " + std::to_string(t.version) + " but the snapshot names " +
             std::to_string(meta->second.version) + " (mix-and-match)");
    }
    const json& targets = e.signed_part.value("targets", json::object());
    if (!targets.is_object()) Bad("targets: targets must be an object");
    for (const auto& [path, info] : targets.items()) {
      if (!info.is_object() || !info.contains("length") || !info["length"].is_number_unsigned() ||
          !info.contains("hashes") || !info["hashes"].is_object()) {
        Bad("targets: '" + path + "' needs length and hashes");
      }
      TargetInfo ti{info["length"].get<uint64_t>(), {}, info.value("custom", json::object())};
      for (const auto& [alg, h] : info["hashes"].items()) {
        if (h.is_string()) ti.hashes[alg] = h.get<std::string>();
      }
      t.targets[path] = std::move(ti);
    }
    CheckFresh("targets", t.version, t.expires, now_);
    targets_ = std::move(t);
    accepted_["targets"] = bytes;
  });
}

}  // namespace outpost::tuf
