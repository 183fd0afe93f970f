#include "fleet/fleet.h"

#include <fmt/format.h>

#include <tuple>

#include "core/json_fields.h"
#include "core/logging.h"
#include "telemetry/webhook.h"

namespace outpost::fleet {

Fleet::Fleet(Database& db, FleetOptions options) : db_(db), options_(std::move(options)) {
  if (!options_.drift_webhook_url.empty())
    drift_webhook_ = std::make_unique<WebhookSender>(options_.drift_webhook_url);
}

Fleet::~Fleet() = default;

Millis Fleet::Now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void Audit(const Database& db, SqlConnection& c, const Caller& who, std::string action,
           std::string target, json detail) {
  AuditEntry e;
  e.time_ms = Fleet::Now();
  e.actor = who.actor;
  e.action = std::move(action);
  e.target = std::move(target);
  e.detail = std::move(detail);
  e.source = who.source;
  AppendAudit(db, c, e);
}

// --- operator tokens ---------------------------------------------------------------------------

Caller Fleet::AuthenticateOperator(std::string_view authorization, const std::string& source,
                                   Scope needed) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.substr(0, kBearer.size()) != kBearer)
    Fail(ErrorCode::kUnauthenticated, "an operator token is required (Authorization: Bearer)");
  std::string hash = HashSecret(authorization.substr(kBearer.size()));
  SqlRows rows;
  db_.Read([&](SqlConnection& c) {
    rows = c.Query("SELECT name, scope, revoked_ms FROM operator_tokens WHERE hash = ?", {hash});
  });
  if (rows.empty() || !rows[0].IsNull(2))
    Fail(ErrorCode::kUnauthenticated, "unknown or revoked operator token");
  Scope scope = ParseScope(rows[0].Text(1));
  if (scope < needed)
    Fail(ErrorCode::kPermissionDenied, fmt::format("this token's scope is {}; this needs {}",
                                                   ScopeName(scope), ScopeName(needed)));
  return {"token:" + rows[0].Text(0), source, scope, ""};
}

namespace {

json InsertToken(SqlConnection& c, const std::string& name, Scope scope, const std::string& by) {
  if (name.empty() || name.size() > 64)
    Fail(ErrorCode::kInvalidArgument, "a token needs a name of 1-64 characters");
  std::string id = NewId("tok_"), secret = NewSecret("opt_");
  c.Query(
      "INSERT INTO operator_tokens (id, name, scope, hash, created_ms, created_by) VALUES (?, ?, "
      "?, ?, ?, ?)",
      {id, name, ScopeName(scope), HashSecret(secret), Fleet::Now(), by});
  return {{"id", id}, {"name", name}, {"scope", ScopeName(scope)}, {"token", secret}};
}

}  // namespace

json Fleet::CreateTokenDirect(Database& db, const std::string& name, Scope scope,
                              const std::string& actor) {
  json out;
  db.Transact([&](SqlConnection& c) {
    out = InsertToken(c, name, scope, actor);
    Audit(db, c, Caller{actor, "local", Scope::kAdmin, ""}, "token.create", out["id"],
          {{"name", name}, {"scope", ScopeName(scope)}});
  });
  return out;
}

json Fleet::CreateToken(const Caller& caller, const json& body) {
  const JsonFields f(body, "");
  Scope scope = ParseScope(f.Get("scope", "read"));
  std::string name = f.Get("name", "");
  json out;
  db_.Transact([&](SqlConnection& c) {
    out = InsertToken(c, name, scope, caller.actor);
    Audit(db_, c, caller, "token.create", out["id"], {{"name", name}, {"scope", ScopeName(scope)}});
  });
  return out;
}

json Fleet::ListTokens() {
  json out = json::array();
  db_.Read([&](SqlConnection& c) {
    for (const auto& r :
         c.Query("SELECT id, name, scope, created_ms, created_by, revoked_ms FROM operator_tokens "
                 "ORDER BY created_ms"))
      out.push_back({{"id", r.Text(0)},
                     {"name", r.Text(1)},
                     {"scope", r.Text(2)},
                     {"created_ms", r.Int(3)},
                     {"created_by", r.Text(4)},
                     {"revoked_ms", r.IsNull(5) ? json(nullptr) : json(r.Int(5))}});
  });
  return out;
}

void Fleet::RevokeToken(const Caller& caller, const std::string& id) {
  db_.Transact([&](SqlConnection& c) {
    auto rows = c.Query(
        "UPDATE operator_tokens SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL RETURNING "
        "name",
        {Now(), id});
    if (rows.empty()) Fail(ErrorCode::kNotFound, "no active token " + id);
    Audit(db_, c, caller, "token.revoke", id, {{"name", rows[0].Text(0)}});
  });
}

// --- audit -------------------------------------------------------------------------------------

json Fleet::ListAudit(int64_t after, int64_t limit) {
  json out = json::array();
  db_.Read([&](SqlConnection& c) {
    for (const auto& e : ReadAudit(c, after, std::clamp<int64_t>(limit, 1, 10000)))
      out.push_back(ToJson(e));
  });
  return out;
}

AuditVerdict Fleet::VerifyAudit() { return VerifyAudit(db_); }

SignedAuditHead Fleet::SignAuditHead() {
  if (!options_.online_key)
    Fail(ErrorCode::kFailedPrecondition,
         "this server has no online key (--online-key): its audit head is not signed");
  SignedAuditHead h;
  db_.Transact([&](SqlConnection& c) { std::tie(h.seq, h.hash) = AuditHead(c); });
  h.time_ms = Now();
  h.public_key = options_.online_key->pub.public_key;
  h.signature = Sign(*options_.online_key, AuditHeadSigningString(h.seq, h.hash, h.time_ms));
  return h;
}

bool Fleet::PublishAuditHead(Millis interval) {
  if (!options_.online_key) return false;
  int64_t seq = 0;
  db_.Transact([&](SqlConnection& c) { seq = AuditHead(c).first; });
  if (seq == published_seq_ && Now() - published_at_ < interval) return false;
  const SignedAuditHead h = SignAuditHead();
  published_seq_ = h.seq;
  published_at_ = h.time_ms;
  const json j = ToJson(h);
  Log(LogSeverity::kInfo, "fleet", "audit_head",
      fmt::format("audit head {} {} signed", h.seq, h.hash.substr(0, 16)),
      {{"seq", h.seq}, {"hash", h.hash}, {"time_ms", h.time_ms}, {"signature", j["signature"]}});
  return true;
}

AuditVerdict Fleet::VerifyAudit(Database& db) {
  // One consistent view: the head and the rows read in one transaction.
  AuditVerdict verdict;
  db.Transact([&](SqlConnection& c) {
    auto head = AuditHead(c);
    std::vector<AuditEntry> all;
    for (int64_t after = 0;;) {
      auto page = ReadAudit(c, after, 5000);
      if (page.empty()) break;
      after = page.back().seq;
      for (auto& e : page) all.push_back(std::move(e));
    }
    verdict = VerifyAuditChain(all, head);
  });
  return verdict;
}

void Fleet::BumpGeneration(SqlConnection& c) {
  c.Query(
      "UPDATE fleet_meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = "
      "'deployments_generation'");
}

}  // namespace outpost::fleet
