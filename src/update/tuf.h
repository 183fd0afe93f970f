// The Update Framework's metadata and the client's trust decisions (TUF specification 1.0,
// "detailed client workflow" 5.3-5.6): a trusted root, then timestamp, snapshot and targets,
// each accepted only when it is signed by its role's threshold of keys, not expired, not older
// than what was trusted before, and consistent with the role that points to it. Nothing here
// does I/O: callers fetch bytes (bounded in length) and persist what a role accepted.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "package/keys.h"
#include "update/tuf_keys.h"
#include "update/tuf_signer.h"

namespace outpost::tuf {

using Clock = std::chrono::system_clock;

struct Role {
  std::vector<std::string> keyids;  // unique
  int threshold = 1;
};

// A targets role's delegation to another (TUF 1.0 section 4.5): the paths it may sign for,
// as shell-style patterns matched one path segment at a time, or as prefixes of the hex
// SHA-256 of the target path (hashed bins).
struct DelegatedRole : Role {
  std::string name;
  bool terminating = false;
  std::optional<std::vector<std::string>> paths;
  std::optional<std::vector<std::string>> path_hash_prefixes;
  bool IsDelegatedPath(const std::string& target) const;
};

// Hashed bins delegated succinctly (TAP 15): 2^bit_length roles named NAME_PREFIX-<hex>,
// all signed by the same keys, each for the targets whose path hash starts with its number.
struct SuccinctRoles : Role {
  int bit_length = 1;
  std::string name_prefix;
  std::string RoleFor(const std::string& target) const;
  bool IsRole(const std::string& name) const;
};

struct Delegations {
  std::map<std::string, Key> keys;
  std::vector<DelegatedRole> roles;  // in order of trust
  std::optional<SuccinctRoles> succinct_roles;
  // The roles to look in for `target`, in order, each with whether it ends the search.
  std::vector<std::pair<std::string, bool>> RolesFor(const std::string& target) const;
  const Role* Find(const std::string& name) const;  // nullptr: not delegated here
};

struct MetaInfo {  // what timestamp says of snapshot, and snapshot of targets
  int64_t version = 0;
  std::optional<uint64_t> length;
  std::map<std::string, std::string> hashes;  // algorithm -> lowercase hex
};

struct TargetInfo {
  uint64_t length = 0;
  std::map<std::string, std::string> hashes;  // never empty
  nlohmann::json custom;
  // The hash that names the file under consistent snapshots (<hash>.<name>): sha256 when
  // listed, else the first. The specification lets a client use any of them.
  const std::string& NameHash() const;
};

struct Root {
  int64_t version = 0;
  Clock::time_point expires;
  bool consistent_snapshot = false;
  std::map<std::string, Key> keys;    // by key id, as the metadata names them
  std::map<std::string, Role> roles;  // root, targets, snapshot, timestamp
};

struct Timestamp {
  int64_t version = 0;
  Clock::time_point expires;
  MetaInfo snapshot;
};

struct Snapshot {
  int64_t version = 0;
  Clock::time_point expires;
  std::map<std::string, MetaInfo> meta;  // "targets.json", "<delegated role>.json" -> ...
};

struct Targets {
  int64_t version = 0;
  Clock::time_point expires;
  std::map<std::string, TargetInfo> targets;
  std::optional<Delegations> delegations;
};

// Canonical JSON as TUF signs it (OLPC, as securesystemslib encodes it): keys sorted, no
// whitespace, only '"' and '\\' escaped in strings, integers only (Error(kInvalidArgument) for a
// float).
std::string CanonicalJson(const nlohmann::json& j);
// The TUF key id of an Ed25519 public key: sha256 of its canonical key object.
std::string KeyIdOf(const std::string& raw_public_key);
nlohmann::json KeyJson(const std::string& raw_public_key);
// A signed envelope {"signed": ..., "signatures": [{"keyid", "sig"}]} over `signed_part`.
nlohmann::json SignEnvelope(const nlohmann::json& signed_part,
                            const std::vector<const SigningKey*>& keys);
std::string FormatExpiry(Clock::time_point t);

// --- The repository side (outpost repo publish, the fleet server) ------------------------------

// Checks that `targets_bytes` is targets metadata signed by the threshold of the targets keys
// `root_bytes` names, not expired at `now`, with well-formed target entries; returns it parsed.
// Throws Error(kPermissionDenied) for a signature or expiry problem, kInvalidArgument otherwise.
Targets VerifyTargets(const std::string& root_bytes, const std::string& targets_bytes,
                      Clock::time_point now);
Root ParseRootMetadata(const std::string& root_bytes);  // structure only; signatures unchecked
// Checks that `bytes` is metadata for the delegated role `role`, signed by the threshold of the
// keys `delegator` delegates it to, not expired, listing only target paths delegated to it.
Targets VerifyDelegatedTargets(const Targets& delegator, const std::string& role,
                               const std::string& bytes, Clock::time_point now);

struct OnlineRoles {
  std::string snapshot;   // bytes of N.snapshot.json
  std::string timestamp;  // bytes of timestamp.json
};
struct RoleFile {
  std::string bytes;
  int64_t version = 0;
};
// Snapshot `snapshot_version` naming each targets role's file ("targets" and delegated roles,
// with version, length and sha256), and timestamp `timestamp_version` naming that snapshot: the
// roles a repository signs with its online keys.
OnlineRoles SignOnlineRoles(const std::map<std::string, RoleFile>& targets_roles,
                            int64_t snapshot_version, int64_t timestamp_version,
                            Clock::time_point expires, const Signer& snapshot_key,
                            const Signer& timestamp_key);
// A new timestamp for an unchanged snapshot (its expiry pushed on).
std::string SignTimestamp(const std::string& snapshot_bytes, int64_t snapshot_version,
                          int64_t timestamp_version, Clock::time_point expires,
                          const Signer& timestamp_key);

// The metadata a client trusts, updated role by role in the specification's order (5.3-5.6),
// with the semantics of python-tuf's TrustedMetadataSet, which the conformance suite holds
// clients to. Every refusal throws Error(kPermissionDenied) for a security check (signature,
// threshold, rollback, expiry, inconsistency) or Error(kInvalidArgument) for malformed
// metadata. Metadata that verifies but is not valid as the final one (an expired timestamp or
// snapshot, a snapshot the timestamp does not name) is still kept as the trusted version before
// the refusal: the next one is checked against it for rollback.
class TrustedSet {
 public:
  // `root_bytes` is the locally trusted root; `now` is fixed for the whole update (5.1).
  TrustedSet(const std::string& root_bytes, Clock::time_point now);

  void UpdateRoot(const std::string& bytes);  // 5.3: version N+1, signed by old and new roots
  void CheckRootNotExpired() const;           // 5.3.10, after the last root update
  // 5.4. False when `bytes` has the trusted timestamp's version: the trusted one stays.
  bool UpdateTimestamp(const std::string& bytes);
  // 5.5. `trusted`: bytes this client accepted on an earlier run (its cache), which the
  // timestamp's hashes for the new snapshot need not match.
  void UpdateSnapshot(const std::string& bytes, bool trusted = false);
  void UpdateTargets(const std::string& bytes) { UpdateDelegatedTargets(bytes, "targets", "root"); }
  // 5.6 for `role`, delegated by `delegator` ("root" for the top-level targets), which must
  // be trusted already.
  void UpdateDelegatedTargets(const std::string& bytes, const std::string& role,
                              const std::string& delegator);

  const Root& root() const { return root_; }
  const Timestamp* timestamp() const { return timestamp_ ? &*timestamp_ : nullptr; }
  const Snapshot* snapshot() const { return snapshot_ ? &*snapshot_ : nullptr; }
  // The trusted targets metadata of `role`; nullptr when not loaded.
  const Targets* targets(const std::string& role = "targets") const;

 private:
  void CheckFinalTimestamp() const;
  void CheckFinalSnapshot() const;

  Clock::time_point now_;
  Root root_;
  std::optional<Timestamp> timestamp_;
  std::optional<Snapshot> snapshot_;
  std::map<std::string, Targets> targets_;  // by role name
};

}  // namespace outpost::tuf
