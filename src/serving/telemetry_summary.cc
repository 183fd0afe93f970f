#include "serving/telemetry_summary.h"

#include <cmath>

namespace outpost {

int64_t NoisyCount(uint64_t count, double epsilon, std::mt19937_64& rng) {
  if (epsilon <= 0) return static_cast<int64_t>(count);
  // Laplace(b) as the difference of two exponentials with mean b.
  std::exponential_distribution<double> e(epsilon);
  double noisy = static_cast<double>(count) + e(rng) - e(rng);
  return std::max<int64_t>(0, static_cast<int64_t>(std::llround(noisy)));
}

nlohmann::json SummaryBuilder::Next(ModelManager& models, uint64_t failures_total,
                                    const nlohmann::json& resources) {
  nlohmann::json attributes = nlohmann::json::object();
  models.ForEachServed([&](const ServedModel& m) {
    const std::string key = m.config.name + "/" + m.config.version;
    Last now;
    now.inferences = m.metrics.success ? m.metrics.success->value() : 0;
    if (m.metrics.request) {
      now.latency_sum = m.metrics.request->sum();
      now.latency_count = m.metrics.request->count();
    }
    Last& before = last_[key];
    const auto inferences =
        static_cast<uint64_t>(std::max(0.0, now.inferences - before.inferences));
    const uint64_t timed = now.latency_count - before.latency_count;
    attributes["model." + key + ".inferences"] = NoisyCount(inferences, epsilon_, rng_);
    if (timed > 0)
      attributes["model." + key + ".mean_latency_ms"] =
          (now.latency_sum - before.latency_sum) / static_cast<double>(timed) * 1e3;
    before = now;
  });
  attributes["device.failures"] =
      NoisyCount(failures_total - std::min(failures_total, last_failures_), epsilon_, rng_);
  last_failures_ = failures_total;
  for (const auto& [k, v] : resources.items())
    if (v.is_number() || v.is_boolean()) attributes["device." + k] = v;
  attributes["noise_epsilon"] = epsilon_;
  return attributes;
}

}  // namespace outpost
