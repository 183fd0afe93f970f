#include "fleet/device_input.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/json_fields.h"
#include "core/names.h"

namespace outpost::fleet {

using json = nlohmann::json;

namespace {

// A member of an object, or null: OTLP from a device may have any shape.
const json& Member(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

std::string Text(const json& j) { return j.is_string() ? j.get<std::string>() : ""; }

const json& Array(const json& j) {
  static const json kEmpty = json::array();
  return j.is_array() ? j : kEmpty;
}

// OTLP's AnyValue, back to plain JSON; nesting past a few levels is cut off.
json PlainValue(const json& v, int depth = 0) {
  if (!v.is_object() || depth > 8) return nullptr;
  for (const char* scalar : {"stringValue", "boolValue", "doubleValue"}) {
    const json& x = Member(v, scalar);
    if (x.is_string() || x.is_boolean() || x.is_number()) return x;
  }
  const json& i = Member(v, "intValue");
  if (i.is_number_integer()) return i;
  if (i.is_string()) {
    try {
      return std::stoll(i.get<std::string>());
    } catch (const std::exception&) {
      return i;
    }
  }
  if (Member(v, "arrayValue").is_object()) {
    json out = json::array();
    for (const auto& e : Array(Member(Member(v, "arrayValue"), "values")))
      out.push_back(PlainValue(e, depth + 1));
    return out;
  }
  if (Member(v, "kvlistValue").is_object()) {
    json out = json::object();
    for (const auto& kv : Array(Member(Member(v, "kvlistValue"), "values")))
      if (Member(kv, "key").is_string())
        out[Text(Member(kv, "key"))] = PlainValue(Member(kv, "value"), depth + 1);
    return out;
  }
  return nullptr;
}

json PlainAttributes(const json& attributes) {
  json out = json::object();
  for (const auto& kv : Array(attributes))
    if (Member(kv, "key").is_string())
      out[Text(Member(kv, "key"))] = PlainValue(Member(kv, "value"));
  return out;
}

bool Kept(const std::string& event) {
  return event == "drift" || event == "anomaly" || event == "anomaly_over" ||
         event == "load_shed" || event == "capture" || event == "local_change";
}

}  // namespace

// A bounded JSON object from a device (capabilities, health, models).
json BoundedObject(const json& body, const char* key, size_t max_bytes) {
  if (!body.contains(key)) return json::object();
  const json& v = body[key];
  if (!v.is_object()) Fail(ErrorCode::kInvalidArgument, std::string(key) + " must be an object");
  if (v.dump().size() > max_bytes)
    Fail(ErrorCode::kPayloadTooLarge, fmt::format("{} is over {} bytes", key, max_bytes));
  return v;
}

DeviceReport ParseDeviceReport(const json& body) {
  if (!body.is_object()) Fail(ErrorCode::kInvalidArgument, "a report must be an object");
  DeviceReport r;
  r.capabilities = BoundedObject(body, "capabilities", 16384);
  r.models = BoundedObject(body, "models", 16384);
  r.health = BoundedObject(body, "health", 16384);
  json deployments = BoundedObject(body, "deployments", 65536);
  r.agent_version = JsonFields(body, "").Get("agent_version", "");
  if (r.agent_version.size() > 64) Fail(ErrorCode::kInvalidArgument, "agent_version is too long");
  const JsonFields health(r.health, "", "health");
  r.healthy = health.Get("ready", true);
  // The rollout controller compares these with its limits: numbers or nothing.
  for (const char* key : {"error_rate", "latency_ms"}) health.Get(key, 0.0);
  for (const auto& [name, s] : deployments.items()) {
    if (!IsValidModelName(name))
      Fail(ErrorCode::kInvalidArgument, "deployments: bad deployment name");
    if (!s.is_object() || !s.contains("revision") || !s["revision"].is_number_integer())
      Fail(ErrorCode::kInvalidArgument, "deployments." + name + " needs an integer revision");
    const JsonFields status(s, "", "deployments." + name);
    DeploymentStatus st{name, s["revision"].get<int64_t>(), status.Get("status", ""),
                        status.Get("reason", "")};
    if (st.status != "installed" && st.status != "failed" && st.status != "installing")
      Fail(ErrorCode::kInvalidArgument,
           "deployments." + name + ".status must be installed, failed or installing");
    if (st.reason.size() > 1024) st.reason.resize(1024);
    r.deployments.push_back(std::move(st));
  }
  return r;
}

OtlpBatch ParseOtlpLogs(const json& body, const std::string& idempotency_key) {
  if (!Member(body, "resourceLogs").is_array())
    Fail(ErrorCode::kInvalidArgument, "not an OTLP logs request: resourceLogs is missing");
  OtlpBatch batch;
  batch.batch_id = idempotency_key;
  for (const auto& rl : Array(body["resourceLogs"])) {
    json resource = PlainAttributes(Member(Member(rl, "resource"), "attributes"));
    if (batch.batch_id.empty()) batch.batch_id = Text(resource["outpost.batch.id"]);
    for (const auto& sl : Array(Member(rl, "scopeLogs"))) {
      for (const auto& rec : Array(Member(sl, "logRecords"))) {
        ++batch.records;
        json attrs = PlainAttributes(Member(rec, "attributes"));
        std::string event = Text(attrs["event.name"]);
        if (!Kept(event)) continue;
        int64_t time_ms = 0;
        try {
          time_ms = std::stoll(Text(Member(rec, "timeUnixNano"))) / 1000000;
        } catch (const std::exception&) {
        }
        std::string model = Text(attrs["model"]), version = Text(attrs["version"]);
        if (!model.empty() && !IsValidModelName(model)) model.clear();
        if (!version.empty() && !IsValidVersionLabel(version)) version.clear();
        attrs["body"] = PlainValue(Member(rec, "body"));
        batch.events.push_back({time_ms, event, model, version, std::move(attrs)});
      }
    }
  }
  if (batch.batch_id.empty() || batch.batch_id.size() > 200)
    Fail(ErrorCode::kInvalidArgument, "a telemetry batch needs an id (Idempotency-Key)");
  return batch;
}

}  // namespace outpost::fleet
