#include "monitoring/model_monitor.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/json_fields.h"
#include "core/logging.h"

namespace outpost {
namespace {

// Classes a categorical monitor counts; a wider output (a vocabulary) is counted in its first
// 65,536 classes only.
constexpr size_t kMaxClasses = 65536;

using json = nlohmann::json;

[[noreturn]] void Bad(const std::string& what) {
  Fail(ErrorCode::kInvalidArgument, "manifest: monitoring: " + what);
}

// Calls f(double) for each element; false for a datatype that is not numeric. A template,
// not std::function: it runs for every element of every monitored tensor of every request.
template <typename T, typename F>
void ForEach(const Tensor& t, F&& f) {
  const size_t n = t.data.size() / sizeof(T);
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, t.data.data() + i * sizeof(T), sizeof(T));
    f(static_cast<double>(v));
  }
}

template <typename F>
bool Visit(const Tensor& t, F&& f) {
  switch (t.dtype) {
    case DataType::kFp32:
      ForEach<float>(t, f);
      return true;
    case DataType::kFp64:
      ForEach<double>(t, f);
      return true;
    case DataType::kInt32:
      ForEach<int32_t>(t, f);
      return true;
    case DataType::kInt64:
      ForEach<int64_t>(t, f);
      return true;
    case DataType::kUint8:
      ForEach<uint8_t>(t, f);
      return true;
    default:
      return false;
  }
}

}  // namespace

std::optional<double> TensorMean(const Tensor& t) {
  double sum = 0;
  size_t n = 0;
  if (!Visit(t,
             [&](double v) {
               sum += v;
               ++n;
             }) ||
      n == 0)
    return std::nullopt;
  return sum / static_cast<double>(n);
}

std::optional<int> TensorArgmax(const Tensor& t) {
  // The first row's predicted class (the last dimension indexes classes).
  const int64_t classes = t.shape.empty() ? 0 : t.shape.back();
  if (classes <= 0) return std::nullopt;
  int best = -1, i = 0;
  double best_v = -INFINITY;
  if (!Visit(t, [&](double v) {
        if (i < classes && v > best_v) {
          best_v = v;
          best = i;
        }
        ++i;
      }))
    return std::nullopt;
  return best >= 0 ? std::optional<int>(best) : std::nullopt;
}

MonitorSpec ParseMonitorSpec(const json& j) {
  MonitorSpec spec;
  const std::string context = "manifest: monitoring";
  const JsonFields m(j, context);
  m.OnlyKeys({"tensors", "window", "psi_threshold", "ks_alpha", "js_threshold", "page_hinkley",
              "capture"});
  {
    // Bounds keep a monitor's memory small whatever a manifest says (a window and a reference
    // of 100,000 values are 800 KB each).
    spec.window = static_cast<int>(m.Integer("window", spec.window, 50, 100000));
    spec.psi_threshold = m.Get("psi_threshold", spec.psi_threshold);
    spec.ks_alpha = m.Get("ks_alpha", spec.ks_alpha);
    spec.js_threshold = m.Get("js_threshold", spec.js_threshold);
    const JsonFields ph = m.Object("page_hinkley");
    ph.OnlyKeys({"delta", "threshold"});
    spec.ph_delta = ph.Get("delta", spec.ph_delta);
    spec.ph_threshold = ph.Get("threshold", spec.ph_threshold);
    auto positive = [](double v, double max) { return std::isfinite(v) && v > 0 && v <= max; };
    if (!positive(spec.psi_threshold, 100)) Bad("'psi_threshold' must be in (0, 100]");
    if (!positive(spec.ks_alpha, 1)) Bad("'ks_alpha' must be in (0, 1]");
    if (!positive(spec.js_threshold, 1)) Bad("'js_threshold' must be in (0, 1]");
    if (!positive(spec.ph_delta, 1e3) || !positive(spec.ph_threshold, 1e6))
      Bad("'page_hinkley' needs a positive 'delta' (at most 1000) and 'threshold' (at most 1e6)");
    const JsonFields capture = m.Object("capture");
    capture.OnlyKeys({"samples", "max_bytes"});
    spec.capture_samples = static_cast<int>(capture.Integer("samples", 10, 0, 1000));
    spec.capture_max_bytes =
        static_cast<size_t>(capture.Integer("max_bytes", 64 << 10, 0, 16 << 20));
    const JsonFields tensors = m.Object("tensors");
    if (tensors.json().empty()) Bad("'tensors' must name at least one input or output");
    for (const auto& [name, value] : tensors.json().items()) {
      FeatureSpec f;
      f.tensor = name;
      const JsonFields t(value, context, name);
      t.OnlyKeys({"type", "reference_size", "reference"});
      const std::string type = t.Get("type", "continuous");
      if (type != "continuous" && type != "categorical")
        Bad("'" + name + ".type' must be continuous or categorical");
      f.categorical = type == "categorical";
      f.reference_size =
          static_cast<int>(t.Integer("reference_size", f.reference_size, 50, 100000));
      if (t.Has("reference")) {
        const JsonFields r = t.Object("reference");
        r.OnlyKeys({"mean", "std", "edges", "fractions"});
        f.mean = r.Optional<double>("mean");
        f.stddev = r.Optional<double>("std");
        f.edges = r.Get("edges", std::vector<double>{});
        f.fractions = r.Get("fractions", std::vector<double>{});
        // A continuous reference is whole: mean and std for the streaming test, and bins
        // (edges with their fractions) for PSI if it has them. A categorical one is the
        // fractions of its classes.
        if (f.categorical && (f.mean || f.stddev || !f.edges.empty() || f.fractions.empty()))
          Bad("'" + name + ".reference' of a categorical tensor is its class 'fractions' only");
        if (!f.categorical && (!f.mean || !f.stddev || !(*f.stddev > 0)))
          Bad("'" + name + ".reference' needs both 'mean' and a positive 'std'");
        if (!f.categorical && f.edges.empty() != f.fractions.empty())
          Bad("'" + name + ".reference' needs 'edges' and 'fractions' together");
        if (f.mean && !(std::isfinite(*f.mean) && std::isfinite(*f.stddev)))
          Bad("'" + name + ".reference' needs finite 'mean' and 'std'");
        if (!f.categorical && !f.edges.empty() && f.fractions.size() != f.edges.size() + 1)
          Bad("'" + name + ".reference.fractions' needs one more entry than 'edges'");
        if (f.edges.size() > 1000 || f.fractions.size() > kMaxClasses)
          Bad("'" + name + ".reference' has too many bins");
        for (size_t i = 0; i < f.edges.size(); ++i)
          if (!std::isfinite(f.edges[i]) || (i > 0 && !(f.edges[i] > f.edges[i - 1])))
            Bad("'" + name + ".reference.edges' must be finite and increasing");
        double total = 0;
        for (double p : f.fractions) {
          if (!(p >= 0 && p <= 1)) Bad("'" + name + ".reference.fractions' must be in [0, 1]");
          total += p;
        }
        if (!f.fractions.empty() && std::abs(total - 1) > 1e-3)
          Bad("'" + name + ".reference.fractions' must add up to 1");
      }
      spec.features.push_back(std::move(f));
    }
  }
  return spec;
}

struct ModelMonitor::Feature {
  FeatureSpec spec;
  std::mutex mu;
  std::vector<double> reference;  // first N values, when the manifest gave none (bounded)
  std::vector<double> expected;   // reference bin fractions (continuous) or class fractions
  std::vector<double> edges;
  std::optional<PageHinkley> ph;
  std::vector<double> window;  // current window's values (bounded by spec.window)
  std::vector<double> counts;  // categorical: current window's class counts
  uint64_t seen = 0, events = 0;
  json last;  // the latest statistics, for Status()
};

ModelMonitor::ModelMonitor(std::string model, std::string version, MonitorSpec spec,
                           std::function<void(const DriftEvent&)> on_event,
                           std::function<void(const std::vector<Tensor>&)> on_capture)
    : model_(std::move(model)),
      version_(std::move(version)),
      spec_(std::move(spec)),
      on_event_(std::move(on_event)),
      on_capture_(std::move(on_capture)) {
  for (const auto& f : spec_.features) {
    auto feature = std::make_unique<Feature>();
    feature->spec = f;
    if (!f.categorical && f.mean)
      feature->ph.emplace(*f.mean, *f.stddev, spec_.ph_delta, spec_.ph_threshold);
    if (!f.categorical && !f.edges.empty()) {
      feature->edges = f.edges;
      feature->expected = f.fractions;
    }
    if (f.categorical && !f.fractions.empty()) feature->expected = f.fractions;
    feature->window.reserve(static_cast<size_t>(spec_.window));
    features_.push_back(std::move(feature));
  }
}

ModelMonitor::~ModelMonitor() = default;

void ModelMonitor::Observe(const std::vector<Tensor>& tensors) {
  for (auto& fp : features_) {
    Feature& f = *fp;
    const Tensor* t = nullptr;
    for (const auto& x : tensors)
      if (x.name == f.spec.tensor) t = &x;
    if (!t) continue;
    std::optional<double> value;
    if (f.spec.categorical) {
      if (auto c = TensorArgmax(*t)) value = *c;
    } else {
      value = TensorMean(*t);
    }
    if (!value || !std::isfinite(*value)) continue;
    std::vector<DriftEvent> events;
    std::vector<double> full_window, full_counts;
    size_t counted_in_lock = 0;
    {
      std::lock_guard lock(f.mu);
      ++f.seen;
      const bool has_reference = f.spec.categorical ? !f.expected.empty() : f.ph.has_value();
      if (!has_reference) {
        f.reference.push_back(*value);
        if (static_cast<int>(f.reference.size()) < f.spec.reference_size) continue;
        if (f.spec.categorical) {
          const int64_t classes = std::min<int64_t>(t->shape.empty() ? 0 : t->shape.back(),
                                                    static_cast<int64_t>(kMaxClasses));
          f.expected.assign(static_cast<size_t>(std::max<int64_t>(classes, 1)), 0.0);
          for (double c : f.reference)
            if (c >= 0 && c < static_cast<double>(f.expected.size()))
              f.expected[static_cast<size_t>(c)] += 1;
          for (auto& e : f.expected) e /= static_cast<double>(f.reference.size());
        } else {
          double mean = 0, sq = 0;
          for (double v : f.reference) mean += v;
          mean /= static_cast<double>(f.reference.size());
          for (double v : f.reference) sq += (v - mean) * (v - mean);
          double sd = std::sqrt(sq / static_cast<double>(f.reference.size()));
          f.ph.emplace(mean, sd > 0 ? sd : 1e-9, spec_.ph_delta, spec_.ph_threshold);
          f.edges = QuantileEdges(f.reference, 10);
          f.expected = BinFractions(f.edges, f.reference);
        }
        continue;
      }
      if (f.ph && f.ph->Add(*value)) {
        // The streaming test's "window" is the samples it saw since its previous alarm.
        events.push_back(DriftEvent{model_,
                                    version_,
                                    f.spec.tensor,
                                    "page_hinkley",
                                    f.ph->alarm_statistic(),
                                    spec_.ph_threshold,
                                    f.ph->alarm_samples(),
                                    {{"change_began_at_sample", f.ph->change_start()},
                                     {"value", *value},
                                     {"reference_mean", f.ph->mean()}}});
        ++f.events;
        ++counted_in_lock;
      }
      if (f.spec.categorical) {
        if (f.counts.size() < f.expected.size()) f.counts.resize(f.expected.size(), 0.0);
        if (*value < static_cast<double>(f.counts.size()))
          f.counts[static_cast<size_t>(*value)] += 1;
      }
      f.window.push_back(*value);
      // A full window is taken, and its tests run outside the lock, so that other requests
      // are not held up while they sort and sum. (No `continue` from here on: a Page-Hinkley
      // event of this sample is delivered below.)
      if (static_cast<int>(f.window.size()) >= spec_.window) {
        full_window.swap(f.window);
        f.window.reserve(static_cast<size_t>(spec_.window));
        if (f.spec.categorical) {
          full_counts = f.counts;
          f.counts.assign(f.counts.size(), 0.0);
        }
      }
    }
    if (!full_window.empty()) {
      // The reference (edges, expected fractions, sample) no longer changes once it is set.
      json last;
      auto window_event = [&](const std::string& test, double statistic, double threshold,
                              json evidence) {
        events.push_back(DriftEvent{model_, version_, f.spec.tensor, test, statistic, threshold,
                                    full_window.size(), std::move(evidence)});
      };
      if (f.spec.categorical) {
        double js = JensenShannon(f.expected, full_counts);
        last = {{"jensen_shannon", js}};
        if (js > spec_.js_threshold)
          window_event("jensen_shannon", js, spec_.js_threshold,
                       {{"expected", f.expected}, {"observed", full_counts}});
      } else {
        double mean = 0;
        for (double v : full_window) mean += v;
        mean /= static_cast<double>(full_window.size());
        last = {{"window_mean", mean}};
        // PSI needs reference bins: given by the manifest or taken from the first requests.
        if (!f.expected.empty()) {
          auto actual = BinFractions(f.edges, full_window);
          double psi = PopulationStabilityIndex(f.expected, actual);
          last["psi"] = psi;
          if (psi > spec_.psi_threshold)
            window_event("psi", psi, spec_.psi_threshold,
                         {{"expected", f.expected}, {"observed", actual}, {"window_mean", mean}});
        }
        if (!f.reference.empty()) {
          auto ks = TwoSampleKs(f.reference, full_window);
          last["ks_p_value"] = ks.p_value;
          if (ks.p_value < spec_.ks_alpha)
            window_event("ks", ks.statistic, spec_.ks_alpha,
                         {{"p_value", ks.p_value}, {"window_mean", mean}});
        }
      }
      std::lock_guard lock(f.mu);
      f.last = std::move(last);
      f.events += events.size() - counted_in_lock;
    }
    for (const auto& e : events)
      if (on_event_) on_event_(e);
    // One capture per loaded version, at its first drift: a long drift must not turn into
    // a stream of inputs leaving the device.
    if (!events.empty() && on_capture_ && spec_.capture_samples > 0 &&
        !capture_started_.exchange(true)) {
      capture_bytes_left_ = spec_.capture_max_bytes;
      capture_left_ = spec_.capture_samples;
    }
  }
}

void ModelMonitor::ObserveInputs(const std::vector<Tensor>& inputs) {
  Observe(inputs);
  if (capture_left_.load(std::memory_order_relaxed) <= 0) return;
  size_t bytes = 0;
  for (const auto& t : inputs) bytes += t.data.size();
  // Claim one sample and its bytes; a sample that does not fit ends the capture.
  if (capture_left_.fetch_sub(1) <= 0) {
    capture_left_ = 0;
    return;
  }
  size_t left = capture_bytes_left_.load();
  if (bytes > left) {
    capture_left_ = 0;
    return;
  }
  capture_bytes_left_ -= bytes;
  on_capture_(inputs);
}

json ModelMonitor::Status() const {
  json out = json::array();
  for (const auto& fp : features_) {
    std::lock_guard lock(fp->mu);
    out.push_back(
        {{"tensor", fp->spec.tensor},
         {"type", fp->spec.categorical ? "categorical" : "continuous"},
         {"observed", fp->seen},
         {"reference_ready", fp->spec.categorical ? !fp->expected.empty() : fp->ph.has_value()},
         {"drift_events", fp->events},
         {"last_window", fp->last}});
  }
  return out;
}

}  // namespace outpost
