#include "fleet/audit.h"

#include <fmt/format.h>

#include "core/json_fields.h"
#include "package/keys.h"
#include "package/sha256.h"

namespace outpost::fleet {

using json = nlohmann::json;

namespace {

// What each entry's hash covers: keys sorted, no whitespace, strings as nlohmann writes them.
// Fixed for good: chains written since the first release verify with it.
std::string Stable(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::strict); }

}  // namespace

json ToJson(const AuditEntry& e) {
  return {{"seq", e.seq},       {"time_ms", e.time_ms},     {"actor", e.actor},
          {"action", e.action}, {"target", e.target},       {"detail", e.detail},
          {"source", e.source}, {"prev_hash", e.prev_hash}, {"hash", e.hash}};
}

AuditEntry AuditEntryFromJson(const json& j) {
  try {
    AuditEntry e;
    e.seq = j.at("seq").get<int64_t>();
    e.time_ms = j.at("time_ms").get<int64_t>();
    e.actor = j.at("actor").get<std::string>();
    e.action = j.at("action").get<std::string>();
    e.target = j.at("target").get<std::string>();
    e.detail = j.at("detail");
    e.source = j.at("source").get<std::string>();
    e.prev_hash = j.at("prev_hash").get<std::string>();
    e.hash = j.at("hash").get<std::string>();
    return e;
  } catch (const json::exception& ex) {
    Fail(ErrorCode::kInvalidArgument, std::string("audit entry: ") + ex.what());
  }
}

std::string AuditHash(const AuditEntry& e) {
  json fields = {{"seq", e.seq},       {"time_ms", e.time_ms}, {"actor", e.actor},
                 {"action", e.action}, {"target", e.target},   {"detail", e.detail},
                 {"source", e.source}};
  return Sha256Hex(e.prev_hash + "\n" + Stable(fields));
}

std::pair<int64_t, std::string> AuditHead(SqlConnection& c) {
  auto rows = c.Query("SELECT value FROM fleet_meta WHERE key = 'audit_head'");
  if (rows.empty()) Fail(ErrorCode::kInternal, "audit: the head row is missing");
  const std::string& v = rows[0].Text(0);
  auto colon = v.find(':');
  return {std::stoll(v.substr(0, colon)), v.substr(colon + 1)};
}

void AppendAudit(const Database& db, SqlConnection& c, AuditEntry& e) {
  auto rows = c.Query(
      fmt::format("SELECT value FROM fleet_meta WHERE key = 'audit_head'{}", db.ForUpdate()));
  if (rows.empty()) Fail(ErrorCode::kInternal, "audit: the head row is missing");
  const std::string& v = rows[0].Text(0);
  auto colon = v.find(':');
  e.seq = std::stoll(v.substr(0, colon)) + 1;
  e.prev_hash = v.substr(colon + 1);
  e.hash = AuditHash(e);
  c.Query(
      "INSERT INTO audit_log (seq, time_ms, actor, action, target, detail, source, prev_hash, "
      "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      {e.seq, e.time_ms, e.actor, e.action, e.target, e.detail.dump(), e.source, e.prev_hash,
       e.hash});
  c.Query("UPDATE fleet_meta SET value = ? WHERE key = 'audit_head'",
          {fmt::format("{}:{}", e.seq, e.hash)});
}

std::vector<AuditEntry> ReadAudit(SqlConnection& c, int64_t after_seq, int64_t limit) {
  auto rows = c.Query(
      "SELECT seq, time_ms, actor, action, target, detail, source, prev_hash, hash FROM audit_log "
      "WHERE seq > ? ORDER BY seq LIMIT ?",
      {after_seq, limit});
  std::vector<AuditEntry> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    AuditEntry e{r.Int(0),  r.Int(1),  r.Text(2),
                 r.Text(3), r.Text(4), json::parse(r.Text(5), nullptr, false),
                 r.Text(6), r.Text(7), r.Text(8)};
    out.push_back(std::move(e));
  }
  return out;
}

std::string AuditHeadSigningString(int64_t seq, const std::string& hash, int64_t time_ms) {
  return "outpost-audit-head-v1\n" +
         Stable(json{{"seq", seq}, {"hash", hash}, {"time_ms", time_ms}});
}

json ToJson(const SignedAuditHead& h) {
  return {{"seq", h.seq},
          {"hash", h.hash},
          {"time_ms", h.time_ms},
          {"public_key", ToHex(h.public_key)},
          {"signature", ToHex(h.signature)}};
}

SignedAuditHead SignedAuditHeadFromJson(const json& j) {
  const JsonFields f(j, "audit head");
  SignedAuditHead h;
  h.seq = f.Require<int64_t>("seq");
  h.hash = f.Require<std::string>("hash");
  h.time_ms = f.Require<int64_t>("time_ms");
  h.public_key = FromHex(f.Require<std::string>("public_key"), "audit head public_key");
  h.signature = FromHex(f.Require<std::string>("signature"), "audit head signature");
  return h;
}

bool VerifySignedAuditHead(const SignedAuditHead& h) {
  if (h.public_key.size() != 32 || h.signature.size() != 64) return false;
  PublicKey key;
  key.public_key = h.public_key;
  return VerifySignature(key, AuditHeadSigningString(h.seq, h.hash, h.time_ms), h.signature);
}

void CheckAgainstEarlierHead(const std::vector<AuditEntry>& entries, const SignedAuditHead& earlier,
                             AuditVerdict& v) {
  if (earlier.seq == 0) return;
  for (const auto& e : entries) {
    if (e.seq != earlier.seq) continue;
    if (e.hash == earlier.hash) return;
    v.ok = false;
    v.first_bad_seq = e.seq;
    v.problem = fmt::format(
        "the history was rewritten: entry {} had hash {} when its head was signed ({} ms), "
        "now {}",
        e.seq, earlier.hash.substr(0, 16), earlier.time_ms, e.hash.substr(0, 16));
    return;
  }
  v.ok = false;
  v.first_bad_seq = earlier.seq;
  v.problem =
      fmt::format("entries were removed: the head signed at {} ms was entry {}, which is gone",
                  earlier.time_ms, earlier.seq);
}

json ToJson(const AuditVerdict& v) {
  return {{"ok", v.ok},
          {"entries", v.entries},
          {"head_hash", v.head_hash},
          {"first_bad_seq", v.first_bad_seq},
          {"problem", v.problem}};
}

std::string Describe(const AuditVerdict& v) {
  return v.ok ? fmt::format("audit log intact: {} entries, head {}", v.entries, v.head_hash)
              : "audit log BROKEN: " + v.problem;
}

AuditVerdict VerifyAuditChain(const std::vector<AuditEntry>& entries,
                              const std::optional<std::pair<int64_t, std::string>>& head) {
  AuditVerdict v;
  std::string prev;
  int64_t expect_seq = entries.empty() ? 1 : entries.front().seq;
  if (!entries.empty()) prev = entries.front().seq == 1 ? "" : entries.front().prev_hash;
  for (const auto& e : entries) {
    auto bad = [&](std::string why) {
      v.ok = false;
      v.first_bad_seq = e.seq;
      v.problem = fmt::format("entry {}: {}", e.seq, why);
      return v;
    };
    if (e.seq != expect_seq)
      return bad(fmt::format("expected seq {} (a row is missing)", expect_seq));
    if (e.prev_hash != prev) return bad("its previous hash does not match the entry before it");
    if (AuditHash(e) != e.hash) return bad("its contents do not match its hash (edited)");
    prev = e.hash;
    ++expect_seq;
    ++v.entries;
  }
  v.head_hash = prev;
  if (head && (head->first != expect_seq - 1 || head->second != prev)) {
    v.ok = false;
    v.first_bad_seq = expect_seq;
    v.problem = fmt::format("the chain ends at entry {} but the head says {} (rows removed)",
                            expect_seq - 1, head->first);
  }
  return v;
}

}  // namespace outpost::fleet
