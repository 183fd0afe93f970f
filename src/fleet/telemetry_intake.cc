// Telemetry from the agents' store-and-forward: OTLP/HTTP JSON logs, one batch per request.
// A batch id (the agent's `Idempotency-Key`) is stored with the batch's events in one
// transaction, so a batch delivered twice is counted once. Events that matter to operators
// (drift, anomalies, load shedding, captures, changes made at the device rather than by the
// fleet) are kept per device, model and version; drift
// events are forwarded to the retraining webhook.
#include <fmt/format.h>

#include "fleet/device_input.h"
#include "fleet/fleet.h"
#include "telemetry/webhook.h"

namespace outpost::fleet {

json Fleet::IntakeOtlpLogs(const Caller& device, const json& body, const std::string& batch_id) {
  OtlpBatch batch = ParseOtlpLogs(body, batch_id);
  bool duplicate = false;
  Millis now = Now();
  db_.Transact([&](SqlConnection& c) {
    duplicate =
        c.Query(
             "INSERT INTO telemetry_batches (batch_id, device_id, received_ms, records) "
             "VALUES (?, ?, ?, ?) ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id",
             {device.device_id + "/" + batch.batch_id, device.device_id, now, batch.records})
            .empty();
    if (duplicate) return;
    for (const auto& e : batch.events)
      c.Query(
          "INSERT INTO fleet_events (device_id, time_ms, received_ms, event, model, version, "
          "body) VALUES (?, ?, ?, ?, ?, ?, ?)",
          {device.device_id, e.time_ms, now, e.event, e.model, e.version,
           e.body.dump(-1, ' ', false, json::error_handler_t::replace)});
  });
  if (!duplicate && drift_webhook_)
    for (const auto& e : batch.events)
      if (e.event == "drift")
        drift_webhook_->Post(json({{"event", "retraining_trigger"},
                                   {"device_id", device.device_id},
                                   {"model", e.model},
                                   {"version", e.version},
                                   {"time_ms", e.time_ms},
                                   {"drift", e.body}})
                                 .dump());
  return {{"batch_id", batch.batch_id},
          {"duplicate", duplicate},
          {"records", batch.records},
          {"events", duplicate ? 0 : batch.events.size()}};
}

int64_t Fleet::Maintain() {
  int64_t removed = 0;
  const Millis now = Now();
  // Retention runs every half minute at most; each pass deletes what aged out since the last.
  if (now - pruned_ms_.load() >= 30000) {
    pruned_ms_ = now;
    // In chunks, each its own short transaction: devices keep writing meanwhile.
    constexpr int64_t kChunk = 5000;
    auto prune = [&](const char* sql, Millis before) {
      for (int i = 0; i < 100; ++i) {
        int64_t n = 0;
        db_.Transact([&](SqlConnection& c) {
          n = static_cast<int64_t>(c.Query(sql, {before, kChunk}).size());
        });
        removed += n;
        if (n < kChunk) break;
      }
    };
    prune(
        "DELETE FROM telemetry_batches WHERE batch_id IN (SELECT batch_id FROM "
        "telemetry_batches WHERE received_ms < ? LIMIT ?) RETURNING received_ms",
        now - options_.batch_retention_ms);
    prune(
        "DELETE FROM fleet_events WHERE id IN (SELECT id FROM fleet_events WHERE received_ms < ? "
        "LIMIT ?) RETURNING id",
        now - options_.event_retention_ms);
  }
  db_.Maintain();
  return removed;
}

json Fleet::ListEvents(const std::string& model, const std::string& version, int64_t limit) {
  std::string sql =
      "SELECT id, device_id, time_ms, received_ms, event, model, version, body FROM fleet_events "
      "WHERE 1 = 1";
  std::vector<SqlArg> args;
  if (!model.empty()) {
    sql += " AND model = ?";
    args.emplace_back(model);
  }
  if (!version.empty()) {
    sql += " AND version = ?";
    args.emplace_back(version);
  }
  sql += " ORDER BY id DESC LIMIT ?";
  args.emplace_back(std::clamp<int64_t>(limit, 1, 10000));
  json out = json::array();
  db_.Read([&](SqlConnection& c) {
    for (const auto& r : c.Query(sql, args))
      out.push_back({{"id", r.Int(0)},
                     {"device_id", r.Text(1)},
                     {"time_ms", r.Int(2)},
                     {"received_ms", r.Int(3)},
                     {"event", r.Text(4)},
                     {"model", r.Text(5)},
                     {"version", r.Text(6)},
                     {"body", json::parse(r.Text(7), nullptr, false)}});
  });
  return out;
}

}  // namespace outpost::fleet
