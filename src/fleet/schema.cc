#include "fleet/schema.h"

#include <fmt/format.h>

namespace outpost::fleet {
namespace {

std::string SchemaV1(const Database& db) {
  return fmt::format(R"(
CREATE TABLE IF NOT EXISTS fleet_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS operator_tokens (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
  created_ms BIGINT NOT NULL, created_by TEXT NOT NULL, revoked_ms BIGINT);
CREATE TABLE IF NOT EXISTS enrollment_tokens (
  id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, tags TEXT NOT NULL, uses_left BIGINT NOT NULL,
  expires_ms BIGINT NOT NULL, created_ms BIGINT NOT NULL, created_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
  id TEXT PRIMARY KEY, public_key TEXT NOT NULL UNIQUE, enrolled_ms BIGINT NOT NULL,
  enrollment_token TEXT NOT NULL, revoked_ms BIGINT, last_seen_ms BIGINT NOT NULL,
  last_request_ms BIGINT NOT NULL, last_address TEXT NOT NULL DEFAULT '',
  tags TEXT NOT NULL, capabilities TEXT NOT NULL DEFAULT '{{}}',
  agent_version TEXT NOT NULL DEFAULT '', models TEXT NOT NULL DEFAULT '{{}}',
  health TEXT NOT NULL DEFAULT '{{}}', healthy BIGINT NOT NULL DEFAULT 1,
  reported_ms BIGINT NOT NULL DEFAULT 0, desired_etag TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS device_tags (
  device_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (device_id, key));
CREATE INDEX IF NOT EXISTS device_tags_by_value ON device_tags (key, value);
CREATE TABLE IF NOT EXISTS deployments (
  name TEXT PRIMARY KEY, selector TEXT NOT NULL, priority BIGINT NOT NULL, layered BIGINT NOT NULL,
  active_revision BIGINT NOT NULL, latest_revision BIGINT NOT NULL, created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS deployment_revisions (
  deployment TEXT NOT NULL, revision BIGINT NOT NULL, packages TEXT NOT NULL,
  created_ms BIGINT NOT NULL, created_by TEXT NOT NULL, PRIMARY KEY (deployment, revision));
CREATE TABLE IF NOT EXISTS device_status (
  device_id TEXT NOT NULL, deployment TEXT NOT NULL, revision BIGINT NOT NULL, status TEXT NOT NULL,
  reason TEXT NOT NULL, updated_ms BIGINT NOT NULL, PRIMARY KEY (device_id, deployment));
CREATE INDEX IF NOT EXISTS device_status_by_revision ON device_status (deployment, revision);
CREATE TABLE IF NOT EXISTS rollouts (
  id {serial}, deployment TEXT NOT NULL, from_revision BIGINT NOT NULL,
  to_revision BIGINT NOT NULL, waves TEXT NOT NULL, soak_ms BIGINT NOT NULL,
  max_failure_rate {double} NOT NULL, min_success_rate {double} NOT NULL,
  max_error_rate {double} NOT NULL, max_latency_ms {double} NOT NULL, state TEXT NOT NULL,
  wave BIGINT NOT NULL, wave_started_ms BIGINT NOT NULL, step BIGINT NOT NULL,
  reason TEXT NOT NULL, created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL,
  created_by TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rollouts_by_state ON rollouts (state);
CREATE TABLE IF NOT EXISTS rollout_steps (
  rollout_id BIGINT NOT NULL, step BIGINT NOT NULL, action TEXT NOT NULL, wave BIGINT NOT NULL,
  time_ms BIGINT NOT NULL, actor TEXT NOT NULL, detail TEXT NOT NULL,
  PRIMARY KEY (rollout_id, step));
CREATE TABLE IF NOT EXISTS audit_log (
  seq BIGINT PRIMARY KEY, time_ms BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
  target TEXT NOT NULL, detail TEXT NOT NULL, source TEXT NOT NULL, prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS telemetry_batches (
  batch_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, received_ms BIGINT NOT NULL,
  records BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS fleet_events (
  id {serial}, device_id TEXT NOT NULL, time_ms BIGINT NOT NULL, received_ms BIGINT NOT NULL,
  event TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS fleet_events_by_model ON fleet_events (model, version, id);
CREATE TABLE IF NOT EXISTS repo_metadata (
  name TEXT PRIMARY KEY, role TEXT NOT NULL, version BIGINT NOT NULL, body TEXT NOT NULL,
  created_ms BIGINT NOT NULL);
INSERT INTO fleet_meta (key, value) VALUES ('audit_head', '0:') ON CONFLICT (key) DO NOTHING;
INSERT INTO fleet_meta (key, value) VALUES ('deployments_generation', '0') ON CONFLICT (key) DO NOTHING;
)",
                     fmt::arg("serial", db.SerialKey()), fmt::arg("double", db.DoubleType()));
}

// The audit log is append-only for anyone who goes through the database engine, too.
std::string AuditTriggers(const Database& db) {
  if (db.dialect() == Dialect::kPostgres)
    return R"(
CREATE OR REPLACE FUNCTION outpost_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
  $f$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $f$;
CREATE OR REPLACE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION outpost_audit_append_only();
)";
  return R"(
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
)";
}

}  // namespace

void Migrate(Database& db) {
  db.Transact([&](SqlConnection& c) {
    if (db.dialect() == Dialect::kPostgres) c.Script("SELECT pg_advisory_xact_lock(7301001)");
    c.Script("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)");
    int64_t have = c.QueryInt("SELECT COALESCE(MAX(version), 0) FROM schema_version");
    if (have > kSchemaVersion)
      Fail(ErrorCode::kFailedPrecondition,
           fmt::format("database schema v{} is newer than this server (v{}): upgrade the server",
                       have, kSchemaVersion));
    if (have >= kSchemaVersion) return;
    if (have < 1) {
      c.Script(SchemaV1(db));
      c.Script(AuditTriggers(db));
    }
    if (have < 2) {
      // Waves admit counts of devices (fleet/rollout.h): the bound a rollout has reached. A
      // rollout running across the upgrade recomputes it at the controller's next tick.
      c.Script("ALTER TABLE rollouts ADD COLUMN admit_below BIGINT NOT NULL DEFAULT 0");
      // Retention deletes by age.
      c.Script(
          "CREATE INDEX IF NOT EXISTS telemetry_batches_by_time ON telemetry_batches "
          "(received_ms); CREATE INDEX IF NOT EXISTS fleet_events_by_time ON fleet_events "
          "(received_ms);");
    }
    c.Query("DELETE FROM schema_version");
    c.Query("INSERT INTO schema_version (version) VALUES (?)", {kSchemaVersion});
  });
}

}  // namespace outpost::fleet
