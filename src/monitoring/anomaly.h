// Anomalies in the device's own figures (latency, error rate, queue depth, temperature): a
// robust baseline — the median and the median absolute deviation of a sliding window — and an
// event when a figure leaves it for several samples running, and again when it returns.
// Medians shrug off the spikes they are meant to find, unlike a mean and a standard deviation.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <string>

namespace outpost {

struct AnomalyOptions {
  size_t window = 120;           // samples in the baseline
  size_t warmup = 30;            // samples before any verdict
  double threshold = 6;          // robust z-score: |x - median| / (1.4826 MAD)
  int consecutive = 3;           // samples past the threshold before an event
  double min_scale = 1e-9;       // a floor for the MAD of a figure that never moves
  double relative_floor = 0.02;  // and a floor relative to the median: 2 % of it
};

struct AnomalyVerdict {
  enum class Change { kNone, kStarted, kEnded } change = Change::kNone;
  double z = 0;
  double median = 0;
  double scale = 0;  // 1.4826 MAD
};

class AnomalyDetector {
 public:
  explicit AnomalyDetector(AnomalyOptions options = {}) : options_(options) {}
  // Adds a sample and says whether an anomaly started or ended with it. Samples taken during
  // an anomaly stay out of the baseline, so a long excursion does not become the new normal
  // until it has lasted a whole window.
  AnomalyVerdict Add(double x);
  bool anomalous() const { return anomalous_; }

 private:
  AnomalyOptions options_;
  std::deque<double> window_;
  std::deque<double> held_;  // samples of the current excursion
  int run_ = 0;
  bool anomalous_ = false;
};

}  // namespace outpost
