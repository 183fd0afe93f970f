#include "telemetry/otlp_shipper.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <random>

#include "core/curl_global.h"

namespace outpost {
namespace {

using json = nlohmann::json;

json AnyValue(const json& v) {
  if (v.is_boolean()) return {{"boolValue", v.get<bool>()}};
  if (v.is_number_integer()) return {{"intValue", std::to_string(v.get<int64_t>())}};
  if (v.is_number()) return {{"doubleValue", v.get<double>()}};
  if (v.is_string()) return {{"stringValue", v.get<std::string>()}};
  return {{"stringValue", v.dump()}};
}

json Attributes(const json& object) {
  json out = json::array();
  if (!object.is_object()) return out;
  for (const auto& [k, v] : object.items()) out.push_back({{"key", k}, {"value", AnyValue(v)}});
  return out;
}

int SeverityNumber(const std::string& s) {
  if (s == "DEBUG") return 5;
  if (s == "INFO") return 9;
  if (s == "WARN") return 13;
  if (s == "ERROR") return 17;
  return 0;
}

// The answer (partial-success details at most) is kept short, for the log.
size_t KeepAnswer(char* data, size_t size, size_t n, void* body) {
  auto* s = static_cast<std::string*>(body);
  if (s->size() < 4096) s->append(data, std::min<size_t>(size * n, 4096 - s->size()));
  return size * n;
}

}  // namespace

std::string EventPayload(const std::string& severity, const std::string& body,
                         const json& attributes) {
  return json{{"severity", severity}, {"body", body}, {"attributes", attributes}}.dump();
}

std::string OtlpLogsBody(const OutboxBatch& batch, const ShipperOptions& options) {
  json records = json::array();
  for (const auto& item : batch.items) {
    json event = json::parse(item.payload, nullptr, false);
    if (event.is_discarded() || !event.is_object()) event = {{"body", item.payload}};
    json attributes = Attributes(event.value("attributes", json::object()));
    attributes.push_back({{"key", "outpost.kind"}, {"value", {{"stringValue", item.kind}}}});
    attributes.push_back(
        {{"key", "outpost.seq"}, {"value", {{"intValue", std::to_string(item.seq)}}}});
    attributes.push_back(
        {{"key", "outpost.priority"}, {"value", {{"intValue", std::to_string(item.priority)}}}});
    const std::string severity = event.value("severity", "INFO");
    records.push_back({{"timeUnixNano", std::to_string(item.created_unix_nanos)},
                       {"severityText", severity},
                       {"severityNumber", SeverityNumber(severity)},
                       {"body", {{"stringValue", event.value("body", "")}}},
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
    : outbox_(outbox), options_(std::move(options)) {
  EnsureCurlInitialised();
}

OtlpShipper::~OtlpShipper() { Stop(); }

bool OtlpShipper::ShipOnce() {
  auto batch = outbox_.NextBatch(options_.max_items, options_.max_bytes);
  if (!batch) return false;
  const std::string body = OtlpLogsBody(*batch, options_);
  std::string url = options_.endpoint;
  while (!url.empty() && url.back() == '/') url.pop_back();
  url += "/v1/logs";
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  const std::string key = "Idempotency-Key: " + batch->id;
  headers = curl_slist_append(headers, key.c_str());
  std::string answer;
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout_ms));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min(options_.timeout_ms, 5000)));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, KeepAnswer);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &answer);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (rc != CURLE_OK || status / 100 != 2) {
    ++failures_;
    if (rc != CURLE_OK)
      spdlog::debug("telemetry: batch {} not delivered: {}", batch->id, curl_easy_strerror(rc));
    else
      spdlog::debug("telemetry: batch {} refused with {}: {}", batch->id, status, answer);
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
        spdlog::warn("telemetry: {}", e.what());
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
