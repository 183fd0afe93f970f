#include "monitoring/anomaly.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace outpost {
namespace {

double Median(std::vector<double> v) {
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(mid), v.end());
  double m = v[mid];
  if (v.size() % 2 == 0) {
    double lower = *std::max_element(v.begin(), v.begin() + static_cast<ptrdiff_t>(mid));
    m = (m + lower) / 2;
  }
  return m;
}

}  // namespace

AnomalyVerdict AnomalyDetector::Add(double x) {
  AnomalyVerdict v;
  if (!std::isfinite(x)) return v;
  auto admit = [&](double value) {
    window_.push_back(value);
    while (window_.size() > options_.window) window_.pop_front();
  };
  if (window_.size() < options_.warmup) {
    admit(x);
    return v;
  }
  std::vector<double> values(window_.begin(), window_.end());
  v.median = Median(values);
  for (auto& d : values) d = std::fabs(d - v.median);
  v.scale = std::max(
      {1.4826 * Median(values), options_.min_scale, options_.relative_floor * std::fabs(v.median)});
  v.z = std::fabs(x - v.median) / v.scale;
  const bool out = v.z > options_.threshold;
  if (out) {
    ++run_;
    held_.push_back(x);
    if (!anomalous_ && run_ >= options_.consecutive) {
      anomalous_ = true;
      v.change = AnomalyVerdict::Change::kStarted;
    }
    // An excursion that lasts a whole window is the new normal: it joins the baseline.
    if (held_.size() >= options_.window) {
      for (double h : held_) admit(h);
      held_.clear();
      run_ = 0;
      if (anomalous_) {
        anomalous_ = false;
        v.change = AnomalyVerdict::Change::kEnded;
      }
    }
    return v;
  }
  // Back inside: a short blip's samples never enter the baseline.
  held_.clear();
  run_ = 0;
  if (anomalous_) {
    anomalous_ = false;
    v.change = AnomalyVerdict::Change::kEnded;
  }
  admit(x);
  return v;
}

}  // namespace outpost
