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

namespace outpost::tuf {

using Clock = std::chrono::system_clock;

struct Role {
  std::vector<std::string> keyids;
  int threshold = 1;
};

struct MetaInfo {  // what timestamp says of snapshot, and snapshot of targets
  int64_t version = 0;
  std::optional<uint64_t> length;
  std::map<std::string, std::string> hashes;  // algorithm -> lowercase hex
};

struct TargetInfo {
  uint64_t length = 0;
  std::map<std::string, std::string> hashes;
  nlohmann::json custom;
};

struct Root {
  int64_t version = 0;
  Clock::time_point expires;
  bool consistent_snapshot = false;
  std::map<std::string, PublicKey> keys;  // by TUF key id
  std::map<std::string, Role> roles;      // root, targets, snapshot, timestamp
};

struct Timestamp {
  int64_t version = 0;
  Clock::time_point expires;
  MetaInfo snapshot;
};

struct Snapshot {
  int64_t version = 0;
  Clock::time_point expires;
  std::map<std::string, MetaInfo> meta;  // "targets.json" -> ...
};

struct Targets {
  int64_t version = 0;
  Clock::time_point expires;
  std::map<std::string, TargetInfo> targets;
};

// Canonical JSON as TUF signs it: sorted keys, no insignificant whitespace.
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

struct OnlineRoles {
  std::string snapshot;   // bytes of N.snapshot.json
  std::string timestamp;  // bytes of timestamp.json
};
// Snapshot `snapshot_version` naming targets (its version, length and sha256), and timestamp
// `timestamp_version` naming that snapshot: the roles a repository signs with its online keys.
OnlineRoles SignOnlineRoles(const std::string& targets_bytes, int64_t targets_version,
                            int64_t snapshot_version, int64_t timestamp_version,
                            Clock::time_point expires, const SigningKey& snapshot_key,
                            const SigningKey& timestamp_key);
// A new timestamp for an unchanged snapshot (its expiry pushed on).
std::string SignTimestamp(const std::string& snapshot_bytes, int64_t snapshot_version,
                          int64_t timestamp_version, Clock::time_point expires,
                          const SigningKey& timestamp_key);

// The metadata a client trusts, updated role by role in the specification's order. Every
// refusal throws Error(kPermissionDenied) for a security check (signature, threshold, rollback,
// expiry, inconsistency) or Error(kInvalidArgument) for malformed metadata, and leaves the
// trusted set exactly as it was.
class TrustedSet {
 public:
  // `root_bytes` is the locally trusted root; `now` is fixed for the whole update (5.1).
  TrustedSet(const std::string& root_bytes, Clock::time_point now);

  void UpdateRoot(const std::string& bytes);  // 5.3: version N+1, signed by old and new roots
  void CheckRootNotExpired() const;           // 5.3.10, after the last root update
  // `from_cache`: metadata this client accepted on an earlier run, loaded first so that the
  // new one is compared with it. Signatures and rollback rules still apply; expiry and the
  // hash/version pins of the role above do not (they may have moved on since).
  void UpdateTimestamp(const std::string& bytes, bool from_cache = false);  // 5.4
  void UpdateSnapshot(const std::string& bytes, bool from_cache = false);   // 5.5
  void UpdateTargets(const std::string& bytes);                             // 5.6

  const Root& root() const { return root_; }
  const std::optional<Timestamp>& timestamp() const { return timestamp_; }
  const std::optional<Snapshot>& snapshot() const { return snapshot_; }
  const std::optional<Targets>& targets() const { return targets_; }
  // The accepted bytes of each role, for the caller to persist.
  const std::map<std::string, std::string>& accepted() const { return accepted_; }

 private:
  Clock::time_point now_;
  Root root_;
  std::optional<Timestamp> timestamp_;
  std::optional<Snapshot> snapshot_;
  std::optional<Targets> targets_;
  std::map<std::string, std::string> accepted_;
};

}  // namespace outpost::tuf
