// Ships the outbox to an OpenTelemetry collector over OTLP/HTTP with JSON bodies: each batch
// becomes one ExportLogsServiceRequest to <endpoint>/v1/logs, its id in the resource attribute
// "outpost.batch.id" and the Idempotency-Key header, so that a receiver counts it once however
// often a lost answer makes us send it again. One batch in flight; backoff while the link is
// down.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "telemetry/outbox.h"

namespace outpost {

struct ShipperOptions {
  std::string endpoint;  // e.g. http://collector:4318 ("/v1/logs" is appended)
  std::string device_id;
  std::string service_version = OUTPOST_VERSION;
  size_t max_items = 500;
  size_t max_bytes = 1 << 20;
  int timeout_ms = 10000;
  int min_backoff_ms = 200;
  int max_backoff_ms = 60000;
  // When set, a batch goes through this instead of a POST to the endpoint (the fleet server's
  // signed channel): it returns the HTTP status (0: no answer) and the answer's body.
  std::function<long(const std::string& body, const std::string& batch_id, std::string* answer)>
      send;
};

// The OTLP/JSON body for a batch. Each item's payload is a LogEvent's JSON (core/logging.h):
// "msg" becomes the record's body, "level" its severity, everything else its attributes.
std::string OtlpLogsBody(const OutboxBatch& batch, const ShipperOptions& options);

class OtlpShipper {
 public:
  OtlpShipper(Outbox& outbox, ShipperOptions options);
  ~OtlpShipper();
  void Start();
  void Stop();
  void Wake();  // something was appended
  // One attempt: sends the next batch. True when a batch was delivered, false when there was
  // nothing to send or the send failed.
  bool ShipOnce();
  uint64_t failures() const { return failures_; }

 private:
  Outbox& outbox_;
  ShipperOptions options_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, woken_ = false;
  std::atomic<uint64_t> failures_{0};
};

}  // namespace outpost
