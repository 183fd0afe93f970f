// The protocol-neutral core of both front ends: finds the model version, checks the request
// against its schema, runs it through the scheduler, and records the figures.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include <chrono>

#include "core/memory_budget.h"
#include "serving/inference.h"
#include "serving/model_manager.h"

namespace outpost {

struct InferenceLimits {
  std::chrono::milliseconds default_timeout{30000};
};

class InferenceService {
 public:
  InferenceService(ModelManager& models, InferenceLimits limits)
      : models_(models), limits_(limits) {}

  // Throws Error; the caller converts it to its protocol's status. `deadline`, when set,
  // is the caller's own (a gRPC deadline) and wins if earlier. Inputs in shared memory are
  // read (charged to `hold`) and outputs asked there written before it returns.
  InferResponse Infer(InferRequest request,
                      std::optional<Clock::time_point> deadline = std::nullopt,
                      BudgetHold* hold = nullptr);

  ModelManager& models() { return models_; }
  // The regions of the system shared-memory extension, for both front ends.
  SharedMemoryRegistry& shared_memory() { return shared_memory_; }
  // Every request so far: for figures per interval (anomaly detection).
  struct Totals {
    uint64_t requests = 0, failures = 0, latency_ns = 0;
  };
  Totals totals() const { return {requests_.load(), failures_.load(), latency_ns_.load()}; }
  // While `reason` returns non-empty, requests are refused (kUnavailable): load shedding.
  void SetShedding(std::function<std::string()> reason) { shed_reason_ = std::move(reason); }

 private:
  ModelManager& models_;
  InferenceLimits limits_;
  std::function<std::string()> shed_reason_;
  SharedMemoryRegistry shared_memory_;
  std::atomic<uint64_t> requests_{0}, failures_{0}, latency_ns_{0};
};

// Checks inputs and requested outputs against the model's declared schema. Throws
// Error(kInvalidArgument) naming the tensor and what is wrong.
void ValidateRequest(const InferRequest& request, const ModelConfig& config);

}  // namespace outpost
