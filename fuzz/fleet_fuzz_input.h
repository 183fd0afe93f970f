// What a device or an operator can send the fleet server, before any database: device reports,
// OTLP telemetry batches, tags, selectors and package lists. The first byte picks the parser,
// the rest is its JSON. Each must parse or be refused with outpost::Error; anything else thrown
// escapes and is a crash. Shared by fuzz/fleet_fuzz.cc and the corpus replay unit test.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_input.h"
#include "fleet/desired_state.h"
#include "fleet/device_input.h"
#include "json_nesting.h"

namespace outpost_fuzz {

inline void RunFleetInput(const uint8_t* data, size_t size) {
  if (size < 1) return;
  using nlohmann::json;
  // As the server's front end reads a body: within the limits of the endpoint it is sent to.
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const outpost::JsonLimits& limits =
      data[0] % 5 == 1 ? outpost::fleet::kTelemetryJsonLimits : outpost::fleet::kReportJsonLimits;
  json j;
  try {
    j = outpost::ParseJson(text, limits, "body");
  } catch (const outpost::Error& e) {
    if (e.code() != outpost::ErrorCode::kInvalidArgument &&
        e.code() != outpost::ErrorCode::kPayloadTooLarge)
      __builtin_trap();
    return;
  }
  if (outpost::JsonDepth(j) > limits.max_depth) __builtin_trap();
  CheckAcceptedNesting(text, limits.max_depth);
  try {
    switch (data[0] % 5) {
      case 0: {
        auto r = outpost::fleet::ParseDeviceReport(j);
        for (const auto& d : r.deployments)
          if ((d.status != "installed" && d.status != "failed" && d.status != "installing") ||
              d.reason.size() > 1024)
            std::abort();
        break;
      }
      case 1: {
        auto b = outpost::fleet::ParseOtlpLogs(j, "");
        if (b.batch_id.empty() || b.batch_id.size() > 200 ||
            b.events.size() > static_cast<size_t>(b.records))
          std::abort();
        for (const auto& e : b.events)
          e.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        break;
      }
      case 2: {
        auto tags = outpost::fleet::ParseTags(j);
        if (tags.size() > 64) std::abort();
        break;
      }
      case 3: {
        auto s = outpost::fleet::Selector::Parse(j);
        // A selector matches the tags it was written for.
        outpost::fleet::Tags tags;
        for (const auto& [k, v] : s.any_of) tags[k] = v.front();
        if (!s.Matches(tags)) std::abort();
        if (outpost::fleet::Selector::Parse(s.ToJson()).any_of != s.any_of) std::abort();
        break;
      }
      default:
        outpost::fleet::ParsePackages(j);
    }
  } catch (const outpost::Error&) {
  }
}

}  // namespace outpost_fuzz
