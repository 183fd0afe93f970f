// The audit trail: every change (who, what, when, from where) is one row of an append-only
// table, written in the same transaction as the change. Each row's hash covers the previous
// row's hash and its own fields, so editing, removing or reordering any row breaks the chain
// from there on; the head (last seq and hash) is kept apart, so cutting rows off the end is
// seen too. Verification needs only the rows: a copy exported elsewhere can be checked offline.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fleet/database.h"

namespace outpost::fleet {

struct AuditEntry {
  int64_t seq = 0;
  int64_t time_ms = 0;
  std::string actor;   // "token:<name>", "device:<id>", "fleet:<replica>"
  std::string action;  // "deployment.update", "device.revoke", ...
  std::string target;
  nlohmann::json detail = nlohmann::json::object();
  std::string source;  // the caller's address
  std::string prev_hash;
  std::string hash;
};

nlohmann::json ToJson(const AuditEntry& e);
AuditEntry AuditEntryFromJson(const nlohmann::json& j);  // throws Error(kInvalidArgument)

// The hash of an entry: SHA-256 over the previous hash and the entry's canonical JSON.
std::string AuditHash(const AuditEntry& e);

// Appends inside the caller's transaction; fills seq, prev_hash and hash. Serializes writers
// on the head row, so two replicas never fork the chain.
void AppendAudit(const Database& db, SqlConnection& c, AuditEntry& e);

std::vector<AuditEntry> ReadAudit(SqlConnection& c, int64_t after_seq, int64_t limit);
std::pair<int64_t, std::string> AuditHead(SqlConnection& c);

struct AuditVerdict {
  bool ok = true;
  int64_t entries = 0;
  std::string head_hash;
  int64_t first_bad_seq = 0;
  std::string problem;
};

// The head signed with the server's online key (an Ed25519 key the database does not hold):
// someone with the database alone can rewrite the chain and its head, but cannot sign the
// result, and a client that kept an earlier signed head sees its entry changed or gone.
struct SignedAuditHead {
  int64_t seq = 0;
  std::string hash;
  int64_t time_ms = 0;
  std::string public_key;  // 32 raw bytes
  std::string signature;   // 64 raw bytes
};
// The bytes signed: a domain tag, then the canonical JSON of seq, hash and time.
std::string AuditHeadSigningString(int64_t seq, const std::string& hash, int64_t time_ms);
nlohmann::json ToJson(const SignedAuditHead& h);
SignedAuditHead SignedAuditHeadFromJson(const nlohmann::json& j);  // throws Error(kInvalidArgument)
bool VerifySignedAuditHead(const SignedAuditHead& h);

// Checks a chain against a head signed (and saved) earlier: its entry must still be there,
// with the same hash. Fills `v` with the problem when not.
void CheckAgainstEarlierHead(const std::vector<AuditEntry>& entries, const SignedAuditHead& earlier,
                             AuditVerdict& v);

nlohmann::json ToJson(const AuditVerdict& v);
std::string Describe(const AuditVerdict& v);  // one line for people

// Checks a run of entries starting at seq 1 (or continuing from `prev`), and that it ends at
// `head` when given.
AuditVerdict VerifyAuditChain(const std::vector<AuditEntry>& entries,
                              const std::optional<std::pair<int64_t, std::string>>& head);

}  // namespace outpost::fleet
