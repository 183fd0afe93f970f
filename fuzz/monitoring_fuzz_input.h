// The monitoring fuzz input (shared by fuzz/monitoring_fuzz.cc and the corpus replay test): a
// manifest's "monitoring" object as JSON text, a NUL, then a stream of requests — for each, a
// byte choosing the width w of a [1, w] FP32 tensor per monitored name, then its values (NaN,
// infinities and extremes included). A spec the parser accepts must give a monitor that takes
// any stream without crashing, keeps within the parser's bounds, and reports finite evidence.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/json_input.h"
#include "json_nesting.h"
#include "monitoring/model_monitor.h"

namespace outpost_fuzz {

inline void RunMonitoringInput(const uint8_t* data, size_t size) {
  std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t cut = all.find('\0');
  // As a manifest's "monitoring" section reaches it: parsed within the manifests' limits.
  nlohmann::json spec_json;
  try {
    spec_json = outpost::ParseJson(all.substr(0, cut), outpost::JsonLimits::Document(1u << 20), "");
  } catch (const outpost::Error&) {
    return;
  }
  CheckAcceptedNesting(all.substr(0, cut), 64);
  outpost::MonitorSpec spec;
  try {
    spec = outpost::ParseMonitorSpec(spec_json);
  } catch (const outpost::Error&) {
    return;
  }
  if (spec.window > 100000 || spec.features.empty()) __builtin_trap();
  for (const auto& f : spec.features)
    if (f.reference_size > 100000) __builtin_trap();
  outpost::ModelMonitor monitor("m", "1", spec, [](const outpost::DriftEvent& e) {
    if (std::isnan(e.statistic) || e.window == 0) __builtin_trap();
  });
  std::string_view stream = cut == std::string_view::npos ? "" : all.substr(cut + 1);
  size_t at = 0;
  while (at < stream.size()) {
    const int64_t width = 1 + static_cast<uint8_t>(stream[at++]) % 16;
    std::vector<outpost::Tensor> tensors;
    for (const auto& f : spec.features) {
      std::string bytes(static_cast<size_t>(width) * 4, '\0');
      const size_t take = std::min(bytes.size(), stream.size() - at);
      std::memcpy(bytes.data(), stream.data() + at, take);
      at += take;
      tensors.push_back({f.tensor, outpost::DataType::kFp32, {1, width}, std::move(bytes)});
    }
    monitor.ObserveInputs(tensors);
  }
  (void)monitor.Status().dump();
}

}  // namespace outpost_fuzz
