// Seeded synthetic streams for the drift detector's quality figures (bench/drift_quality and
// the unit test that holds the targets): N(0,1) in control, a mean shift of `shift`
// standard deviations after `prefix` samples.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "monitoring/drift.h"

namespace outpost::sim {

struct ShiftOutcome {
  bool false_alarm = false;  // before the shift
  bool detected = false;     // within `window` samples of the shift
  uint64_t delay = 0;        // samples after the shift up to and including the alarm
};

struct Reference {
  double mean = 0, sd = 1;
};

// The reference: known (from the package) or estimated from the first `n` samples.
inline Reference EstimateReference(std::mt19937_64& rng, int n) {
  if (n <= 0) return {};
  std::normal_distribution<double> d(0, 1);
  double sum = 0, sq = 0;
  for (int i = 0; i < n; ++i) {
    double x = d(rng);
    sum += x;
    sq += x * x;
  }
  double mean = sum / n;
  return {mean, std::sqrt(std::max(1e-12, sq / n - mean * mean))};
}

inline ShiftOutcome RunShift(uint64_t seed, double shift, int prefix, int window, int reference_n) {
  std::mt19937_64 rng(seed);
  Reference ref = EstimateReference(rng, reference_n);
  PageHinkley ph(ref.mean, ref.sd);
  std::normal_distribution<double> d(0, 1);
  ShiftOutcome out;
  for (int i = 0; i < prefix; ++i)
    if (ph.Add(d(rng))) out.false_alarm = true;
  const double s = seed % 2 ? shift : -shift;  // both directions
  for (int i = 1; i <= window; ++i) {
    if (ph.Add(d(rng) + s)) {
      out.detected = true;
      out.delay = static_cast<uint64_t>(i);
      break;
    }
  }
  return out;
}

// True when a stream without drift raised an alarm within `n` samples.
inline bool RunNoDrift(uint64_t seed, int n, int reference_n) {
  std::mt19937_64 rng(seed);
  Reference ref = EstimateReference(rng, reference_n);
  PageHinkley ph(ref.mean, ref.sd);
  std::normal_distribution<double> d(0, 1);
  for (int i = 0; i < n; ++i)
    if (ph.Add(d(rng))) return true;
  return false;
}

}  // namespace outpost::sim
