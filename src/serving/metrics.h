// A small Prometheus registry: counters and histograms with fixed label sets, rendered in the
// text exposition format. Updates are lock-free; only creating a series takes a lock.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace outpost {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Add(double v = 1) { value_.fetch_add(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  uint64_t bucket(size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // non-cumulative; +Inf is count_
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

class MetricsRegistry {
 public:
  // Returns the series, creating it on first use. The reference stays valid for the registry's
  // life.
  Counter& GetCounter(const std::string& name, const std::string& help, const Labels& labels);
  Histogram& GetHistogram(const std::string& name, const std::string& help, const Labels& labels,
                          const std::vector<double>& bounds);
  // A collector appends whole metric families (HELP, TYPE, samples) computed at scrape time.
  void AddCollector(std::function<void(std::string&)> collector);
  std::string Render() const;

  static std::vector<double> LatencyBuckets();  // seconds, 50 µs .. 30 s
  static std::vector<double> BatchBuckets();

 private:
  struct Family {
    std::string help;
    std::string type;
    std::map<std::string, std::unique_ptr<Counter>> counters;  // keyed by rendered labels
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
  };
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
  std::vector<std::function<void(std::string&)>> collectors_;
};

std::string RenderLabels(const Labels& labels);
void AppendSample(std::string& out, const std::string& name, const std::string& labels,
                  double value);

// Process figures (resident memory, CPU time, start time, open files) as Prometheus expects them.
void AppendProcessMetrics(std::string& out);

}  // namespace outpost
