#include "telemetry/otlp_shipper.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "core/logging.h"
#include "net/http_client.h"

namespace outpost {
namespace {

using json = nlohmann::json;

json Attributes(const json& object);

json AnyValue(const json& v) {
  if (v.is_boolean()) return {{"boolValue", v.get<bool>()}};
  if (v.is_number_integer()) return {{"intValue", std::to_string(v.get<int64_t>())}};
  if (v.is_number()) return {{"doubleValue", v.get<double>()}};
  if (v.is_string()) return {{"stringValue", v.get<std::string>()}};
  if (v.is_object()) return {{"kvlistValue", {{"values", Attributes(v)}}}};
  if (v.is_array()) {
    json values = json::array();
    for (const auto& e : v) values.push_back(AnyValue(e));
    return {{"arrayValue", {{"values", values}}}};
  }
  return json::object();  // null: OTLP's empty AnyValue
}

json Attributes(const json& object) {
  json out = json::array();
  if (!object.is_object()) return out;
  for (const auto& [k, v] : object.items()) out.push_back({{"key", k}, {"value", AnyValue(v)}});
  return out;
}

// OTLP's SeverityNumber for our levels (and the upper-case names outboxes of 0.1 held).
int SeverityNumber(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), ::tolower);
  if (s == "trace") return 1;
  if (s == "debug") return 5;
  if (s == "info") return 9;
  if (s == "warn") return 13;
  if (s == "error") return 17;
  return 0;
}

struct Record {
  std::string severity, body;
  json attributes;
};

// An outbox payload is a LogEvent's JSON (core/logging.h); rows written by agents before the
// event schema hold {"severity", "body", "attributes"} and still ship.
Record ToRecord(const std::string& payload) {
  json event = json::parse(payload, nullptr, false);
  if (event.is_discarded() || !event.is_object()) return {"info", payload, json::object()};
  if (event.contains("severity") && event.contains("body"))
    return {event.value("severity", "INFO"), event.value("body", ""),
            event.value("attributes", json::object())};
  Record r{event.value("level", "info"), event.value("msg", ""), json::object()};
  for (auto& [key, value] : event.items()) {
    if (key == "level" || key == "msg") continue;
    // OpenTelemetry's semantic convention names the event's kind "event.name".
    r.attributes[key == "event" ? "event.name" : key] = std::move(value);
  }
  return r;
}

}  // namespace

std::string OtlpLogsBody(const OutboxBatch& batch, const ShipperOptions& options) {
  json records = json::array();
  for (const auto& item : batch.items) {
    Record record = ToRecord(item.payload);
    json attributes = Attributes(record.attributes);
    attributes.push_back({{"key", "outpost.kind"}, {"value", {{"stringValue", item.kind}}}});
    attributes.push_back(
        {{"key", "outpost.seq"}, {"value", {{"intValue", std::to_string(item.seq)}}}});
    attributes.push_back(
        {{"key", "outpost.priority"}, {"value", {{"intValue", std::to_string(item.priority)}}}});
    records.push_back({{"timeUnixNano", std::to_string(item.created_unix_nanos)},
                       {"severityText", record.severity},
                       {"severityNumber", SeverityNumber(record.severity)},
                       {"body", {{"stringValue", record.body}}},
                       {"attributes", attributes}});
  }
  json resource = {
      {"attributes",
       {{{"key", "service.name"}, {"value", {{"stringValue", "outpostd"}}}},
        {{"key", "service.version"}, {"value", {{"stringValue", options.service_version}}}},
        {{"key", "device.id"}, {"value", {{"stringValue", options.device_id}}}},
        {{"key", "outpost.batch.id"}, {"value", {{"stringValue", batch.id}}}}}}};
  json body = {{"resourceLogs",
                {{{"resource", resource},
                  {"scopeLogs", {{{"scope", {{"name", "outpost"}}}, {"logRecords", records}}}}}}}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

OtlpShipper::OtlpShipper(Outbox& outbox, ShipperOptions options)
    : outbox_(outbox), options_(std::move(options)) {}

OtlpShipper::~OtlpShipper() { Stop(); }

bool OtlpShipper::ShipOnce() {
  auto batch = outbox_.NextBatch(options_.max_items, options_.max_bytes);
  if (!batch) return false;
  const std::string body = OtlpLogsBody(*batch, options_);
  if (options_.send) {
    std::string answer;
    long status = options_.send(body, batch->id, &answer);
    if (status / 100 != 2) {
      ++failures_;
      Log(LogSeverity::kDebug, "telemetry", "batch_refused",
          fmt::format("batch {} not delivered ({}): {}", batch->id, status, answer),
          {{"batch_id", batch->id}, {"status", status}});
      return false;
    }
    outbox_.Ack(batch->id);
    return true;
  }
  std::string url = options_.endpoint;
  while (!url.empty() && url.back() == '/') url.pop_back();
  url += "/v1/logs";
  net::HttpRequest r;
  r.method = "POST";
  r.url = url;
  r.headers = {"Content-Type: application/json", "Idempotency-Key: " + batch->id};
  r.body = body;
  r.timeout = std::chrono::milliseconds(options_.timeout_ms);
  r.connect_timeout = std::chrono::milliseconds(std::min(options_.timeout_ms, 5000));
  r.max_response_bytes = 64u << 10;  // a collector's answer is a few bytes
  const net::HttpResponse answer = net::Perform(r);
  if (!answer.ok()) {
    ++failures_;
    if (!answer.error.empty())
      Log(LogSeverity::kDebug, "telemetry", "batch_not_delivered",
          fmt::format("batch {} not delivered: {}", batch->id, answer.error),
          {{"batch_id", batch->id}});
    else
      Log(LogSeverity::kDebug, "telemetry", "batch_refused",
          fmt::format("batch {} refused with {}: {}", batch->id, answer.status,
                      answer.body.substr(0, 4096)),
          {{"batch_id", batch->id}, {"status", answer.status}});
    return false;
  }
  outbox_.Ack(batch->id);
  return true;
}

void OtlpShipper::Start() {
  thread_ = std::thread([this] {
    std::mt19937_64 rng{std::random_device{}()};
    int backoff = options_.min_backoff_ms;
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (stop_) return;
      }
      bool sent = false;
      try {
        sent = ShipOnce();
      } catch (const std::exception& e) {
        Log(LogSeverity::kWarn, "telemetry", "shipper_failed", e.what());
      }
      std::chrono::milliseconds wait;
      if (sent) {
        backoff = options_.min_backoff_ms;
        continue;  // more may wait
      }
      if (failures_ > 0 && outbox_.Stats().items > 0) {
        wait = std::chrono::milliseconds(
            backoff / 2 + static_cast<int>(rng() % static_cast<uint64_t>(backoff / 2 + 1)));
        backoff = std::min(options_.max_backoff_ms, backoff * 2);
      } else {
        wait = std::chrono::milliseconds(1000);
      }
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, wait, [this] { return stop_ || woken_; });
      woken_ = false;
    }
  });
}

void OtlpShipper::Wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void OtlpShipper::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace outpost
