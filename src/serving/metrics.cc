#include "serving/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/process_memory.h"

namespace outpost {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size()]) {
  for (size_t i = 0; i < bounds_.size(); ++i) buckets_[i] = 0;
}

void Histogram::Observe(double v) {
  auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
  if (it != bounds_.end()) buckets_[it - bounds_.begin()].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::string RenderLabels(const Labels& labels) {
  if (labels.empty()) return "";
  std::string s = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) s += ",";
    s += labels[i].first + "=\"";
    for (char c : labels[i].second) {
      if (c == '\\' || c == '"') s += '\\';
      if (c == '\n') {
        s += "\\n";
        continue;
      }
      s += c;
    }
    s += "\"";
  }
  return s + "}";
}

namespace {

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

std::string WithLabel(const std::string& labels, const std::string& extra) {
  if (labels.empty()) return "{" + extra + "}";
  return labels.substr(0, labels.size() - 1) + "," + extra + "}";
}

}  // namespace

void AppendSample(std::string& out, const std::string& name, const std::string& labels,
                  double value) {
  out += name;
  out += labels;
  out += ' ';
  out += FormatValue(value);
  out += '\n';
}

Counter& MetricsRegistry::GetCounter(const std::string& name, const std::string& help,
                                     const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& f = families_[name];
  f.help = help;
  f.type = "counter";
  auto& c = f.counters[RenderLabels(labels)];
  if (!c) c = std::make_unique<Counter>();
  return *c;
}

Histogram& MetricsRegistry::GetHistogram(const std::string& name, const std::string& help,
                                         const Labels& labels, const std::vector<double>& bounds) {
  std::lock_guard lock(mu_);
  auto& f = families_[name];
  f.help = help;
  f.type = "histogram";
  auto& h = f.histograms[RenderLabels(labels)];
  if (!h) h = std::make_unique<Histogram>(bounds);
  return *h;
}

void MetricsRegistry::AddCollector(std::function<void(std::string&)> collector) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(collector));
}

std::string MetricsRegistry::Render() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + f.type + "\n";
    for (const auto& [labels, c] : f.counters) AppendSample(out, name, labels, c->value());
    for (const auto& [labels, h] : f.histograms) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h->bounds().size(); ++i) {
        cumulative += h->bucket(i);
        AppendSample(out, name + "_bucket",
                     WithLabel(labels, "le=\"" + FormatValue(h->bounds()[i]) + "\""),
                     static_cast<double>(cumulative));
      }
      uint64_t count = h->count();
      AppendSample(out, name + "_bucket", WithLabel(labels, "le=\"+Inf\""),
                   static_cast<double>(count));
      AppendSample(out, name + "_sum", labels, h->sum());
      AppendSample(out, name + "_count", labels, static_cast<double>(count));
    }
  }
  for (const auto& c : collectors_) c(out);
  return out;
}

std::vector<double> MetricsRegistry::LatencyBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30};
}

std::vector<double> MetricsRegistry::BatchBuckets() { return {1, 2, 4, 8, 16, 32, 64, 128, 256}; }

void AppendProcessMetrics(std::string& out) {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  double cpu =
      ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  // Start time: /proc/self/stat field 22 (clock ticks after boot) plus the boot time.
  double start = 0;
  {
    std::ifstream stat("/proc/self/stat");
    std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    auto rparen = all.rfind(')');
    if (rparen != std::string::npos) {
      std::istringstream fields(all.substr(rparen + 2));
      std::string f;
      for (int i = 3; i <= 22 && fields >> f; ++i) {
        if (i == 22) start = std::stod(f) / static_cast<double>(sysconf(_SC_CLK_TCK));
      }
    }
    std::ifstream procstat("/proc/stat");
    std::string key;
    while (procstat >> key) {
      if (key == "btime") {
        double btime;
        procstat >> btime;
        start += btime;
        break;
      }
    }
  }
  int fds = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d)) ++fds;
    closedir(d);
    fds -= 3;  // ".", ".." and the directory's own descriptor
  }
  out +=
      "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE "
      "process_resident_memory_bytes gauge\n";
  AppendSample(out, "process_resident_memory_bytes", "", static_cast<double>(ResidentBytes()));
  out +=
      "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n# TYPE "
      "process_virtual_memory_bytes gauge\n";
  AppendSample(out, "process_virtual_memory_bytes", "", static_cast<double>(VirtualBytes()));
  out +=
      "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE "
      "process_cpu_seconds_total counter\n";
  AppendSample(out, "process_cpu_seconds_total", "", cpu);
  out +=
      "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n# "
      "TYPE process_start_time_seconds gauge\n";
  AppendSample(out, "process_start_time_seconds", "", start);
  out +=
      "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\n";
  AppendSample(out, "process_open_fds", "", fds);
}

}  // namespace outpost
