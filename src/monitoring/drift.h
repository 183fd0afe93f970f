// Drift statistics for model monitoring: a streaming change detector for fast shifts
// (two-sided Page-Hinkley / CUSUM against a reference mean and spread), and the batch tests
// that compare a window with a reference distribution: population stability index (PSI), the
// two-sample Kolmogorov-Smirnov test and the Jensen-Shannon divergence for categorical ones.
#pragma once

#include <cstdint>
#include <vector>

namespace outpost {

// Page-Hinkley on standardized values z = (x - mean) / stddev: upward and downward cumulative
// sums of (z - delta) and (-z - delta), floored at zero; an alarm when either passes
// `threshold`. With delta = 0.25 and threshold = 32 (both in standard deviations) a shift of
// 0.5 sd is found in ~130 samples on average, and a stream without one runs ~10^7 samples
// between false alarms (bench/drift_quality measures both).
class PageHinkley {
 public:
  PageHinkley(double mean, double stddev, double delta = 0.25, double threshold = 32);
  // Adds one value; true when this value raised the alarm (the sums restart afterwards).
  bool Add(double x);
  double up() const { return up_; }
  double mean() const { return mean_; }
  double down() const { return down_; }
  uint64_t samples() const { return n_; }
  // Index (1-based, since the last alarm) of the sample where the change most likely began.
  uint64_t change_start() const { return change_start_; }
  // Samples the detector had seen (since the previous alarm) when it last raised one.
  uint64_t alarm_samples() const { return alarm_samples_; }
  // The cumulative sum (in standard deviations) that crossed the threshold at the last alarm.
  double alarm_statistic() const { return alarm_statistic_; }
  void Reset();

 private:
  double mean_, inv_sd_, delta_, threshold_;
  double up_ = 0, down_ = 0, alarm_statistic_ = 0;
  uint64_t n_ = 0, up_start_ = 0, down_start_ = 0, change_start_ = 0, alarm_samples_ = 0;
};

// Fractions of `values` in the bins [edges[i-1], edges[i]) with open-ended first and last bins
// (edges.size() + 1 bins).
std::vector<double> BinFractions(const std::vector<double>& edges,
                                 const std::vector<double>& values);
// Bin edges at the reference's quantiles (bins of equal reference mass).
std::vector<double> QuantileEdges(std::vector<double> reference, int bins);

// PSI = sum (a - e) ln(a / e) over bins, fractions floored at `epsilon`. Rule of thumb:
// < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant.
double PopulationStabilityIndex(const std::vector<double>& expected,
                                const std::vector<double>& actual, double epsilon = 1e-4);

struct KsResult {
  double statistic = 0;  // sup |F_a - F_b|
  double p_value = 1;    // asymptotic (Kolmogorov distribution), effective n = nm/(n+m)
};
KsResult TwoSampleKs(std::vector<double> a, std::vector<double> b);

// Jensen-Shannon divergence of two count or probability vectors, base 2: 0 (same) .. 1.
double JensenShannon(const std::vector<double>& p, const std::vector<double>& q);

}  // namespace outpost
