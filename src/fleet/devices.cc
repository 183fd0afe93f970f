// Enrollment, device identity, inventory and reports.
#include <fmt/format.h>

#include "core/json_fields.h"
#include "core/logging.h"
#include "fleet/device_input.h"
#include "fleet/fleet.h"
#include "package/keys.h"
#include "package/sha256.h"

namespace outpost::fleet {

namespace {

const char* kDeviceColumns =
    "id, enrolled_ms, revoked_ms, last_seen_ms, last_address, tags, capabilities, agent_version, "
    "models, health, healthy, reported_ms";

json ParseStored(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  return j.is_discarded() ? json::object() : j;
}

json DeviceJson(const SqlRow& r) {
  return {{"id", r.Text(0)},
          {"enrolled_ms", r.Int(1)},
          {"revoked", !r.IsNull(2)},
          {"revoked_ms", r.IsNull(2) ? json(nullptr) : json(r.Int(2))},
          {"last_seen_ms", r.Int(3)},
          {"last_address", r.Text(4)},
          {"tags", ParseStored(r.Text(5))},
          {"capabilities", ParseStored(r.Text(6))},
          {"agent_version", r.Text(7)},
          {"models", ParseStored(r.Text(8))},
          {"health", ParseStored(r.Text(9))},
          {"healthy", r.Int(10) != 0},
          {"reported_ms", r.Int(11)}};
}

void WriteTags(SqlConnection& c, const std::string& id, const Tags& tags) {
  json j = tags;
  c.Query("UPDATE devices SET tags = ? WHERE id = ?", {j.dump(), id});
  c.Query("DELETE FROM device_tags WHERE device_id = ?", {id});
  for (const auto& [k, v] : tags)
    c.Query("INSERT INTO device_tags (device_id, key, value) VALUES (?, ?, ?)", {id, k, v});
}

}  // namespace

json Fleet::CreateEnrollmentToken(const Caller& caller, const json& body) {
  const JsonFields f(body, "");
  Tags tags = ParseTags(f.Get("tags", json::object()));
  int64_t uses = f.Integer("uses", 1, 1, 100000);
  Millis ttl =
      f.Integer("expires_in_secs", 24 * 3600, 1, options_.max_enrollment_token_ms / 1000) * 1000;
  std::string id = NewId("enr_"), secret = NewSecret("oet_");
  Millis expires = Now() + ttl;
  json tags_json = tags;
  db_.Transact([&](SqlConnection& c) {
    c.Query(
        "INSERT INTO enrollment_tokens (id, hash, tags, uses_left, expires_ms, created_ms, "
        "created_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
        {id, HashSecret(secret), tags_json.dump(), uses, expires, Now(), caller.actor});
    Audit(db_, c, caller, "enrollment_token.create", id,
          {{"tags", tags_json}, {"uses", uses}, {"expires_ms", expires}});
  });
  return {
      {"id", id}, {"token", secret}, {"uses", uses}, {"expires_ms", expires}, {"tags", tags_json}};
}

json Fleet::Enroll(const json& body, const std::string& source) {
  const JsonFields f(body, "enrollment");
  std::string token = f.Get("token", ""), key_hex = f.Get("public_key", ""),
              sig_hex = f.Get("signature", "");
  std::string key = FromHex(key_hex, "public_key");
  if (key.size() != 32) Fail(ErrorCode::kInvalidArgument, "public_key must be 32 bytes (hex)");
  PublicKey pub{"", key, "device"};
  if (!VerifySignature(pub, EnrollmentSigningString(token, key_hex), FromHex(sig_hex, "signature")))
    Fail(ErrorCode::kUnauthenticated, "the enrollment signature does not match the public key");
  json caps = BoundedObject(body, "capabilities", 16384);
  std::string agent_version = f.Get("agent_version", "");
  if (agent_version.size() > 64) Fail(ErrorCode::kInvalidArgument, "agent_version is too long");
  std::string id = NewId("dev_");
  json tags_json;
  db_.Transact([&](SqlConnection& c) {
    Millis now = Now();
    // One use is taken atomically: two devices racing for the last use cannot both get it.
    auto rows = c.Query(
        "UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE hash = ? AND uses_left > 0 "
        "AND expires_ms > ? RETURNING id, tags",
        {HashSecret(token), now});
    if (rows.empty())
      Fail(ErrorCode::kUnauthenticated, "the enrollment token is unknown, used up or expired");
    if (c.QueryInt("SELECT COUNT(*) FROM devices WHERE public_key = ?", {key_hex}) > 0)
      Fail(ErrorCode::kFailedPrecondition, "a device with this public key is already enrolled");
    tags_json = ParseStored(rows[0].Text(1));
    c.Query(
        "INSERT INTO devices (id, public_key, enrolled_ms, enrollment_token, last_seen_ms, "
        "last_request_ms, last_address, tags, capabilities, agent_version) VALUES (?, ?, ?, ?, "
        "?, 0, ?, ?, ?, ?)",
        {id, key_hex, now, rows[0].Text(0), now, source, "{}", caps.dump(), agent_version});
    WriteTags(c, id, ParseTags(tags_json));
    Caller device{"device:" + id, source, Scope::kRead, id};
    Audit(db_, c, device, "device.enroll", id,
          {{"enrollment_token", rows[0].Text(0)}, {"tags", tags_json}});
  });
  Log(LogSeverity::kInfo, "fleet", "enrolled", "device " + id + " enrolled from " + source,
      {{"device_id", id}});
  return {{"device_id", id}, {"tags", tags_json}};
}

Caller Fleet::AuthenticateDevice(const DeviceSignature& sig, std::string_view method,
                                 std::string_view path_and_query, std::string_view body,
                                 const std::string& source) {
  if (sig.device_id.empty() || sig.time_ms.empty() || sig.signature_hex.empty())
    Fail(ErrorCode::kUnauthenticated,
         "a device request needs X-Outpost-Device, X-Outpost-Time and X-Outpost-Signature");
  Millis t = 0;
  try {
    size_t used = 0;
    t = std::stoll(sig.time_ms, &used);
    if (used != sig.time_ms.size()) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    Fail(ErrorCode::kUnauthenticated, "X-Outpost-Time must be Unix milliseconds");
  }
  Millis now = Now(), skew = std::chrono::milliseconds(kClockSkew).count();
  if (t < now - skew || t > now + skew)
    Fail(ErrorCode::kUnauthenticated, "the request time is more than 5 minutes from the server's");
  std::string signature = FromHex(sig.signature_hex, "X-Outpost-Signature");
  SqlRows rows;
  db_.Read([&](SqlConnection& c) {
    rows = c.Query("SELECT public_key, revoked_ms FROM devices WHERE id = ?", {sig.device_id});
  });
  if (rows.empty()) Fail(ErrorCode::kUnauthenticated, "unknown device " + sig.device_id);
  if (!rows[0].IsNull(1))
    Fail(ErrorCode::kPermissionDenied, "device " + sig.device_id + " is revoked");
  PublicKey pub{"", FromHex(rows[0].Text(0), "public key"), sig.device_id};
  if (!VerifySignature(
          pub, SigningString(method, path_and_query, sig.device_id, t, Sha256Hex(body)), signature))
    Fail(ErrorCode::kUnauthenticated, "the request signature does not verify");
  // Accepted only if newer than anything accepted before, and only while not revoked: one
  // conditional write, so two replicas cannot both accept the same request.
  SqlRows updated;
  db_.Transact([&](SqlConnection& c) {
    updated = c.Query(
        "UPDATE devices SET last_request_ms = ?, last_seen_ms = ?, last_address = ? WHERE id = ? "
        "AND last_request_ms < ? AND revoked_ms IS NULL RETURNING tags",
        {t, now, source, sig.device_id, t});
  });
  if (updated.empty())
    Fail(ErrorCode::kUnauthenticated,
         "replayed or out-of-order request (its time is not after the device's last request)");
  Caller caller{"device:" + sig.device_id, source, Scope::kRead, sig.device_id};
  caller.tags_json = updated[0].Text(0);
  return caller;
}

json Fleet::ListDevices(const std::vector<std::pair<std::string, std::string>>& tag_filter,
                        const std::string& after, int64_t limit) {
  std::string sql = fmt::format("SELECT {} FROM devices WHERE id > ?", kDeviceColumns);
  std::vector<SqlArg> args{after};
  for (const auto& [k, v] : tag_filter) {
    sql += " AND id IN (SELECT device_id FROM device_tags WHERE key = ? AND value = ?)";
    args.emplace_back(k);
    args.emplace_back(v);
  }
  sql += " ORDER BY id LIMIT ?";
  args.emplace_back(std::clamp<int64_t>(limit, 1, 10000));
  json out = json::array();
  db_.Read([&](SqlConnection& c) {
    for (const auto& r : c.Query(sql, args)) out.push_back(DeviceJson(r));
  });
  return out;
}

json Fleet::GetDevice(const std::string& id) {
  json out;
  db_.Read([&](SqlConnection& c) {
    auto rows = c.Query(fmt::format("SELECT {} FROM devices WHERE id = ?", kDeviceColumns), {id});
    if (rows.empty()) Fail(ErrorCode::kNotFound, "no device " + id);
    out = DeviceJson(rows[0]);
    json status = json::object();
    for (const auto& r :
         c.Query("SELECT deployment, revision, status, reason, updated_ms FROM device_status WHERE "
                 "device_id = ? ORDER BY deployment",
                 {id}))
      status[r.Text(0)] = {{"revision", r.Int(1)},
                           {"status", r.Text(2)},
                           {"reason", r.Text(3)},
                           {"updated_ms", r.Int(4)}};
    out["deployments"] = status;
  });
  Tags tags = ParseTags(out["tags"]);
  out["desired"] = ResolveDesiredState(id, tags, *Deployments()).ToJson();
  return out;
}

json Fleet::SetDeviceTags(const Caller& caller, const std::string& id, const json& body) {
  Tags tags = ParseTags(JsonFields(body, "").Get("tags", json::object()));
  db_.Transact([&](SqlConnection& c) {
    auto rows = c.Query("SELECT tags FROM devices WHERE id = ?", {id});
    if (rows.empty()) Fail(ErrorCode::kNotFound, "no device " + id);
    WriteTags(c, id, tags);
    Audit(db_, c, caller, "device.tags", id,
          {{"before", ParseStored(rows[0].Text(0))}, {"after", tags}});
  });
  return {{"id", id}, {"tags", tags}};
}

void Fleet::RevokeDevice(const Caller& caller, const std::string& id) {
  db_.Transact([&](SqlConnection& c) {
    auto rows = c.Query(
        "UPDATE devices SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL RETURNING id",
        {Now(), id});
    if (rows.empty()) Fail(ErrorCode::kNotFound, "no enrolled, unrevoked device " + id);
    Audit(db_, c, caller, "device.revoke", id, json::object());
  });
  Log(LogSeverity::kWarn, "fleet", "revoked", "device " + id + " revoked", {{"device_id", id}});
}

json Fleet::Report(const Caller& device, const json& body) {
  DeviceReport report = ParseDeviceReport(body);
  Millis now = Now();
  db_.Transact([&](SqlConnection& c) {
    c.Query(
        "UPDATE devices SET agent_version = ?, models = ?, health = ?, healthy = ?, reported_ms = "
        "?, capabilities = CASE WHEN ? = '{}' THEN capabilities ELSE ? END WHERE id = ?",
        {report.agent_version, report.models.dump(), report.health.dump(), report.healthy, now,
         report.capabilities.dump(), report.capabilities.dump(), device.device_id});
    for (const auto& s : report.deployments)
      c.Query(
          "INSERT INTO device_status (device_id, deployment, revision, status, reason, "
          "updated_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, deployment) DO UPDATE "
          "SET revision = excluded.revision, status = excluded.status, reason = "
          "excluded.reason, updated_ms = excluded.updated_ms",
          {device.device_id, s.deployment, s.revision, s.status, s.reason, now});
  });
  return {{"accepted", true}};
}

DesiredState Fleet::DesiredFor(const Caller& device) {
  json tags = ParseStored(device.tags_json);
  return ResolveDesiredState(device.device_id, ParseTags(tags), *Deployments());
}

json Fleet::DesiredStateBody(const DesiredState& state) const {
  json j = state.ToJson();
  if (!options_.repository_url.empty()) j["repository_url"] = options_.repository_url;
  return j;
}

}  // namespace outpost::fleet
