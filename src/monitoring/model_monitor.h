// Watches a model's chosen inputs and outputs for drift, in bounded memory. Each monitored
// tensor becomes one value per request (continuous: the mean of its elements; categorical:
// the index of its largest element, i.e. the predicted class) and is compared with a reference
// from the manifest or from the first N requests: a Page-Hinkley detector catches fast shifts
// at every request; every `window` requests, PSI and a two-sample KS test (continuous) or the
// Jensen-Shannon divergence (categorical) compare the window with the reference. A test past
// its threshold yields a DriftEvent with its evidence.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "monitoring/drift.h"
#include "runtime/tensor.h"

namespace outpost {

struct DriftEvent {
  std::string model, version, tensor;
  std::string test;  // page_hinkley, psi, ks, jensen_shannon
  double statistic = 0;
  double threshold = 0;
  uint64_t window = 0;      // values the test looked at
  nlohmann::json evidence;  // test-specific: means, fractions, p-value, change start
};

struct FeatureSpec {
  std::string tensor;
  bool categorical = false;
  int classes = 0;  // categorical: the output's last dimension (set from the model)
  // Reference: given (mean/std, or fractions for a categorical one), else the first N values.
  std::optional<double> mean, stddev;
  std::vector<double> edges, fractions;
  int reference_size = 1000;
};

struct MonitorSpec {
  std::vector<FeatureSpec> features;
  int window = 1000;
  double psi_threshold = 0.25;
  double ks_alpha = 0.001;
  double js_threshold = 0.1;
  double ph_delta = 0.25, ph_threshold = 32;
  // After the first drift event, the inputs of the next `capture_samples` requests are offered
  // for retraining (only where the device also allows captures), up to `capture_max_bytes`.
  int capture_samples = 0;
  size_t capture_max_bytes = 64 << 10;
};

// Parses the manifest's "monitoring" object; throws Error(kInvalidArgument) naming the field.
MonitorSpec ParseMonitorSpec(const nlohmann::json& j);

class ModelMonitor {
 public:
  ModelMonitor(std::string model, std::string version, MonitorSpec spec,
               std::function<void(const DriftEvent&)> on_event,
               std::function<void(const std::vector<Tensor>&)> on_capture = nullptr);
  ~ModelMonitor();
  // One request's tensors (inputs before the run, outputs after). Cheap: a mean or an argmax
  // per monitored tensor and a few additions under a short lock.
  void Observe(const std::vector<Tensor>& tensors);
  // A request's inputs: observed, and captured while a capture is under way.
  void ObserveInputs(const std::vector<Tensor>& inputs);
  nlohmann::json Status() const;

 private:
  struct Feature;
  std::string model_, version_;
  MonitorSpec spec_;
  std::function<void(const DriftEvent&)> on_event_;
  std::function<void(const std::vector<Tensor>&)> on_capture_;
  std::atomic<int> capture_left_{0};
  std::atomic<size_t> capture_bytes_left_{0};
  std::atomic<bool> capture_started_{false};
  std::vector<std::unique_ptr<Feature>> features_;
};

// One value per request for a monitored tensor; nullopt when the tensor is not numeric.
std::optional<double> TensorMean(const Tensor& t);
std::optional<int> TensorArgmax(const Tensor& t);

}  // namespace outpost
