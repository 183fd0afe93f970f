// The per-model monitor: what a manifest may ask for, and what the monitor does with a stream.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <utility>

#include "core/error.h"
#include "monitoring/model_monitor.h"

namespace outpost {
namespace {

std::string SpecError(const char* text) {
  try {
    ParseMonitorSpec(nlohmann::json::parse(text));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  return "accepted";
}

TEST(MonitorSpec, RefusesWhatWouldUnboundMemoryOrBreakTheTests) {
  // Each spec, and a phrase its refusal must contain.
  const std::pair<const char*, const char*> refused[] = {
      {R"({"window": 1000000000, "tensors": {"x": {}}})", "50..100000"},
      {R"({"tensors": {"x": {"reference_size": 10000000}}})", "50..100000"},
      {R"({"psi_threshold": -1, "tensors": {"x": {}}})", "psi_threshold"},
      {R"({"ks_alpha": 0, "tensors": {"x": {}}})", "ks_alpha"},
      {R"({"page_hinkley": {"delta": 0}, "tensors": {"x": {}}})", "page_hinkley"},
      {R"({"tensors": {"x": {"reference": {"mean": 0, "std": 1, "edges": [1, 0], "fractions": [0.2, 0.3, 0.5]}}}})",
       "increasing"},
      {R"({"tensors": {"x": {"reference": {"mean": 0, "std": 1, "edges": [0, 1], "fractions": [0.2, 0.3, 0.6]}}}})",
       "add up to 1"},
      {R"({"tensors": {"x": {"type": "categorical", "reference": {"fractions": [-0.5, 1.5]}}}})",
       "[0, 1]"},
      {R"({"tensors": {}})", "at least one"},
      // Found by fuzzing: a misspelt key left a reference with fractions but no bins.
      {R"({"tensors": {"x": {"reference": {"mean": 0, "std": 1, "Pedges": [0], "fractions": [0.5, 0.5]}}}})",
       "unknown field 'x.reference.Pedges'"},
      {R"({"tensors": {"x": {"reference": {"mean": 0, "std": 1, "fractions": [0.5, 0.5]}}}})",
       "together"},
      {R"({"tensors": {"x": {"reference": {"edges": [0], "fractions": [0.5, 0.5]}}}})", "'mean'"},
      {R"({"tensors": {"x": {"type": "categorical", "reference": {"mean": 0, "std": 1}}}})",
       "class 'fractions' only"},
      {R"({"tensors": {"x": {"referenc": {}}}})", "unknown field 'x.referenc'"},
      {R"({"tensors": {"x": {}}, "windw": 5})", "unknown field 'windw'"},
      {R"({"window": 1e300, "tensors": {"x": {}}})", "an integer"},
      {R"({"capture": {"max_bytes": -1}, "tensors": {"x": {}}})", "capture.max_bytes"},
  };
  for (const auto& [spec, phrase] : refused) {
    EXPECT_NE(SpecError(spec).find(phrase), std::string::npos) << spec << " -> " << SpecError(spec);
  }
  EXPECT_EQ(SpecError(R"({"window": 100000, "tensors": {"x": {"reference_size": 100000}}})"),
            "accepted");
}

Tensor Row(const std::string& name, std::vector<float> v) {
  std::string bytes(v.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), v.data(), bytes.size());
  return {name, DataType::kFp32, {1, static_cast<int64_t>(v.size())}, bytes};
}

TEST(ModelMonitor, ReferenceFromTheFirstRequestsThenAShiftIsReported) {
  auto spec = ParseMonitorSpec(
      nlohmann::json::parse(R"({"window": 200, "tensors": {"x": {"reference_size": 200}}})"));
  std::vector<DriftEvent> events;
  int sample = 0, first_event_at = -1;
  ModelMonitor monitor("m", "1", spec, [&](const DriftEvent& e) {
    if (events.empty()) first_event_at = sample;
    events.push_back(e);
  });
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal;
  for (int i = 0; i < 600; ++i) monitor.Observe({Row("x", {normal(rng), normal(rng)})});
  // Non-finite values are not evidence: they are skipped, not counted into a window.
  monitor.Observe({Row("x", {std::nanf(""), 1.0f})});
  EXPECT_TRUE(events.empty()) << events[0].test;
  auto status = monitor.Status();
  EXPECT_EQ(status[0]["observed"], 600);
  EXPECT_TRUE(status[0]["reference_ready"].get<bool>());
  for (sample = 0; sample < 400; ++sample)
    monitor.Observe({Row("x", {normal(rng) + 1, normal(rng) + 1})});
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].model, "m");
  EXPECT_EQ(events[0].tensor, "x");
  // The streaming test answers long before the window (of 200) ends: a shift of 1.4 sd of the
  // per-request mean takes about 30 samples.
  EXPECT_EQ(events[0].test, "page_hinkley");
  EXPECT_LT(first_event_at, 100);
  EXPECT_TRUE(std::any_of(events.begin(), events.end(),
                          [](const DriftEvent& e) { return e.test == "psi"; }));
}

}  // namespace
}  // namespace outpost
