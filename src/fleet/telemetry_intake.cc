// Telemetry from the agents' store-and-forward: OTLP/HTTP JSON logs, one batch per request.
// A batch id (the agent's `Idempotency-Key`) is stored with the batch's events in one
// transaction, so a batch delivered twice is counted once. Events that matter to operators
// (drift, anomalies, load shedding, captures) are kept per device, model and version; drift
// events are forwarded to the retraining webhook.
#include <fmt/format.h>

#include "core/names.h"
#include "fleet/fleet.h"
#include "telemetry/webhook.h"

namespace outpost::fleet {

namespace {

// OTLP's AnyValue, back to plain JSON.
json PlainValue(const json& v) {
  if (!v.is_object()) return nullptr;
  if (v.contains("stringValue")) return v["stringValue"];
  if (v.contains("boolValue")) return v["boolValue"];
  if (v.contains("doubleValue")) return v["doubleValue"];
  if (v.contains("intValue")) {
    const json& i = v["intValue"];
    if (i.is_string()) {
      try {
        return std::stoll(i.get<std::string>());
      } catch (const std::exception&) {
        return i;
      }
    }
    return i;
  }
  if (v.contains("arrayValue")) {
    json out = json::array();
    for (const auto& e : v["arrayValue"].value("values", json::array()))
      out.push_back(PlainValue(e));
    return out;
  }
  if (v.contains("kvlistValue")) {
    json out = json::object();
    for (const auto& kv : v["kvlistValue"].value("values", json::array()))
      if (kv.contains("key") && kv["key"].is_string())
        out[kv["key"].get<std::string>()] = PlainValue(kv.value("value", json::object()));
    return out;
  }
  return nullptr;
}

json PlainAttributes(const json& attributes) {
  json out = json::object();
  if (!attributes.is_array()) return out;
  for (const auto& kv : attributes)
    if (kv.is_object() && kv.contains("key") && kv["key"].is_string())
      out[kv["key"].get<std::string>()] = PlainValue(kv.value("value", json::object()));
  return out;
}

bool Kept(const std::string& event) {
  return event == "drift" || event == "anomaly" || event == "anomaly_over" ||
         event == "load_shed" || event == "capture";
}

struct Event {
  int64_t time_ms;
  std::string event, model, version;
  json body;
};

}  // namespace

json Fleet::IntakeOtlpLogs(const Caller& device, const json& body, const std::string& batch_id) {
  if (!body.is_object() || !body.contains("resourceLogs") || !body["resourceLogs"].is_array())
    Fail(ErrorCode::kInvalidArgument, "not an OTLP logs request: resourceLogs is missing");
  std::string id = batch_id;
  std::vector<Event> events;
  int64_t records = 0;
  for (const auto& rl : body["resourceLogs"]) {
    json resource =
        PlainAttributes(rl.value("resource", json::object()).value("attributes", json()));
    if (id.empty() && resource.contains("outpost.batch.id") &&
        resource["outpost.batch.id"].is_string())
      id = resource["outpost.batch.id"];
    for (const auto& sl : rl.value("scopeLogs", json::array())) {
      for (const auto& rec : sl.value("logRecords", json::array())) {
        ++records;
        json attrs = PlainAttributes(rec.value("attributes", json()));
        std::string event = attrs.value("event.name", "");
        if (!Kept(event)) continue;
        int64_t time_ms = 0;
        if (rec.contains("timeUnixNano") && rec["timeUnixNano"].is_string()) {
          try {
            time_ms = std::stoll(rec["timeUnixNano"].get<std::string>()) / 1000000;
          } catch (const std::exception&) {
          }
        }
        std::string model = attrs.value("model", ""), version = attrs.value("version", "");
        if (!model.empty() && !IsValidModelName(model)) model.clear();
        if (!version.empty() && !IsValidVersionLabel(version)) version.clear();
        attrs["body"] = PlainValue(rec.value("body", json::object()));
        events.push_back({time_ms, event, model, version, std::move(attrs)});
      }
    }
  }
  if (id.empty() || id.size() > 200)
    Fail(ErrorCode::kInvalidArgument, "a telemetry batch needs an id (Idempotency-Key)");
  bool duplicate = false;
  Millis now = Now();
  db_.Transact([&](SqlConnection& c) {
    duplicate = c.Query(
                     "INSERT INTO telemetry_batches (batch_id, device_id, received_ms, records) "
                     "VALUES (?, ?, ?, ?) ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id",
                     {device.device_id + "/" + id, device.device_id, now, records})
                    .empty();
    if (duplicate) return;
    for (const auto& e : events)
      c.Query(
          "INSERT INTO fleet_events (device_id, time_ms, received_ms, event, model, version, "
          "body) VALUES (?, ?, ?, ?, ?, ?, ?)",
          {device.device_id, e.time_ms, now, e.event, e.model, e.version, e.body.dump()});
  });
  if (!duplicate && drift_webhook_)
    for (const auto& e : events)
      if (e.event == "drift")
        drift_webhook_->Post(json({{"event", "retraining_trigger"},
                                   {"device_id", device.device_id},
                                   {"model", e.model},
                                   {"version", e.version},
                                   {"time_ms", e.time_ms},
                                   {"drift", e.body}})
                                 .dump());
  return {{"batch_id", id},
          {"duplicate", duplicate},
          {"records", records},
          {"events", duplicate ? 0 : events.size()}};
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
