// Periodic summaries: what leaves the device by default is aggregates only — per model, how
// many inferences and their mean latency in the interval; for the device, failures and its
// resources. Counts can carry Laplace noise (differential privacy with a configured epsilon;
// each count has sensitivity 1) for deployments that need it.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "serving/model_manager.h"

namespace outpost {

// A count with Laplace(1/epsilon) noise added, rounded and kept at zero or above; the count
// itself when epsilon <= 0.
int64_t NoisyCount(uint64_t count, double epsilon, std::mt19937_64& rng);

class SummaryBuilder {
 public:
  explicit SummaryBuilder(double epsilon, uint64_t seed = std::random_device{}())
      : epsilon_(epsilon), rng_(seed) {}
  // The attributes of one summary event: changes since the previous call.
  nlohmann::json Next(ModelManager& models, uint64_t failures_total,
                      const nlohmann::json& resources);

 private:
  struct Last {
    double inferences = 0, latency_sum = 0;
    uint64_t latency_count = 0;
  };
  double epsilon_;
  std::mt19937_64 rng_;
  std::map<std::string, Last> last_;
  uint64_t last_failures_ = 0;
};

}  // namespace outpost
