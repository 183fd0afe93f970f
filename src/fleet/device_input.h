// What devices send, parsed and bounded before anything touches the database: a device's
// report of its state, and its telemetry batches (OTLP/HTTP JSON logs). Both are untrusted
// input (a device may be compromised) and have a fuzz target (fuzz/fleet_fuzz.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/json_input.h"

namespace outpost::fleet {

// How much of each the server reads, and the bounds it parses the JSON within.
inline constexpr JsonLimits kReportJsonLimits{1u << 20, 16, 1u << 16, 64u << 10};
inline constexpr JsonLimits kTelemetryJsonLimits{4u << 20, 32, 1u << 18, 1u << 20};

struct DeploymentStatus {
  std::string deployment;
  int64_t revision = 0;
  std::string status;  // installed, failed, installing
  std::string reason;
};

struct DeviceReport {
  std::string agent_version;
  nlohmann::json capabilities, models, health;  // objects, each bounded in size
  bool healthy = true;                          // health.ready
  std::vector<DeploymentStatus> deployments;
};

// body[key]: absent is {}, anything but an object is refused, and so is one over max_bytes.
nlohmann::json BoundedObject(const nlohmann::json& body, const char* key, size_t max_bytes);

// Throws Error(kInvalidArgument / kPayloadTooLarge) naming the field.
DeviceReport ParseDeviceReport(const nlohmann::json& body);

// The events operators care about (drift, anomalies, load shedding, captures) from one OTLP
// logs request; other records (summaries) are only counted.
struct FleetEvent {
  int64_t time_ms = 0;
  std::string event, model, version;
  nlohmann::json body;  // the record's attributes, plain JSON, and its body
};

struct OtlpBatch {
  std::string batch_id;  // Idempotency-Key, else the resource's outpost.batch.id
  int64_t records = 0;
  std::vector<FleetEvent> events;
};

OtlpBatch ParseOtlpLogs(const nlohmann::json& body, const std::string& idempotency_key);

}  // namespace outpost::fleet
