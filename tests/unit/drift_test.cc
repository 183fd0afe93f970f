// Drift statistics: exact values on small cases, and the detection targets on seeded
// synthetic streams (deterministic: fixed seeds, no timing).
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "drift_simulation.h"
#include "monitoring/anomaly.h"
#include "monitoring/drift.h"
#include "serving/telemetry_summary.h"

namespace outpost {
namespace {

TEST(Drift, PsiIsZeroForTheSameBinsAndGrowsWithTheShift) {
  std::vector<double> e{0.25, 0.25, 0.25, 0.25};
  EXPECT_DOUBLE_EQ(PopulationStabilityIndex(e, e), 0.0);
  double small = PopulationStabilityIndex(e, {0.3, 0.25, 0.25, 0.2});
  double large = PopulationStabilityIndex(e, {0.7, 0.1, 0.1, 0.1});
  EXPECT_NEAR(small, (0.05 * std::log(0.3 / 0.25)) + (-0.05 * std::log(0.2 / 0.25)), 1e-12);
  EXPECT_GT(large, small);
  EXPECT_THROW(PopulationStabilityIndex(e, {1.0}), Error);
}

TEST(Drift, QuantileEdgesMakeEqualMassBins) {
  std::vector<double> ref;
  for (int i = 0; i < 1000; ++i) ref.push_back(i);
  auto edges = QuantileEdges(ref, 4);
  ASSERT_EQ(edges.size(), 3u);
  auto f = BinFractions(edges, ref);
  for (double x : f) EXPECT_NEAR(x, 0.25, 1e-9);
  EXPECT_EQ(QuantileEdges(std::vector<double>(100, 1.0), 10).size(), 1u);  // ties merge
  auto nan = BinFractions(edges, {NAN, 1.0});
  EXPECT_DOUBLE_EQ(nan[0], 1.0);
}

TEST(Drift, KolmogorovSmirnovOnKnownCases) {
  std::vector<double> a{1, 2, 3, 4, 5}, b{1, 2, 3, 4, 5};
  auto same = TwoSampleKs(a, b);
  EXPECT_DOUBLE_EQ(same.statistic, 0.0);
  EXPECT_NEAR(same.p_value, 1.0, 1e-9);
  std::vector<double> lo(200), hi(200);
  for (int i = 0; i < 200; ++i) {
    lo[static_cast<size_t>(i)] = i;
    hi[static_cast<size_t>(i)] = 1000 + i;
  }
  auto apart = TwoSampleKs(lo, hi);
  EXPECT_DOUBLE_EQ(apart.statistic, 1.0);
  EXPECT_LT(apart.p_value, 1e-20);
  // D = 0.5 with n = m = 4 (effective n 2): the shifted-by-half case.
  auto half = TwoSampleKs({1, 2, 3, 4}, {3, 4, 5, 6});
  EXPECT_DOUBLE_EQ(half.statistic, 0.5);
}

TEST(Drift, JensenShannonBounds) {
  EXPECT_DOUBLE_EQ(JensenShannon({1, 2, 3}, {2, 4, 6}), 0.0);
  EXPECT_NEAR(JensenShannon({1, 0}, {0, 1}), 1.0, 1e-12);
  double mid = JensenShannon({0.5, 0.5}, {0.9, 0.1});
  EXPECT_GT(mid, 0.0);
  EXPECT_LT(mid, 1.0);
  EXPECT_THROW(JensenShannon({1}, {1, 2}), Error);
  EXPECT_THROW(JensenShannon({-1, 2}, {1, 2}), Error);
}

TEST(Drift, PageHinkleyRefusesBadParametersAndIgnoresNaN) {
  EXPECT_THROW(PageHinkley(0, 0), Error);
  EXPECT_THROW(PageHinkley(0, 1, -1, 10), Error);
  PageHinkley ph(0, 1, 0.25, 5);
  EXPECT_FALSE(ph.Add(NAN));
  EXPECT_EQ(ph.samples(), 0u);
  int alarm_at = 0;
  for (int i = 1; i <= 100 && !alarm_at; ++i)
    if (ph.Add(i <= 10 ? 0.0 : 2.0)) alarm_at = i;
  // From sample 11 the upward sum grows 1.75 per sample: past 5 at the third.
  EXPECT_EQ(alarm_at, 13);
  EXPECT_EQ(ph.change_start(), 11u);
  EXPECT_EQ(ph.up(), 0.0);  // restarted
}

// The targets, on seeded runs (300 per scenario here; bench/drift_quality runs 1,000
// and prints the delay distribution).
TEST(Drift, HalfSigmaShiftIsFoundWithin1000SamplesAndNoDriftStaysQuiet) {
  for (int reference_n : {0, 10000}) {
    const int runs = 300;
    int detected = 0, false_alarms = 0, quiet_alarms = 0;
    for (int r = 0; r < runs; ++r) {
      auto o = sim::RunShift(static_cast<uint64_t>(r) + 1, 0.5, 2000, 1000, reference_n);
      detected += o.detected && !o.false_alarm;
      false_alarms += o.false_alarm;
      quiet_alarms += sim::RunNoDrift(static_cast<uint64_t>(r) + 1000001, 100000, reference_n);
    }
    EXPECT_GE(detected, runs * 95 / 100) << "reference_n " << reference_n;
    EXPECT_LT(quiet_alarms, runs / 100) << "reference_n " << reference_n;
    EXPECT_LT(false_alarms, runs / 100);
  }
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

TEST(Anomaly, NoiseStaysQuietASpikeRunIsAnEventAndItEnds) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(50, 0.5);
  AnomalyDetector d;
  int started = 0, ended = 0;
  for (int i = 0; i < 5000; ++i) {
    auto v = d.Add(noise(rng));
    started += v.change == AnomalyVerdict::Change::kStarted;
  }
  EXPECT_EQ(started, 0) << "false alarms on plain noise";
  EXPECT_EQ(d.Add(70).change, AnomalyVerdict::Change::kNone);  // one sample is not enough
  EXPECT_EQ(d.Add(71).change, AnomalyVerdict::Change::kNone);
  auto third = d.Add(70.5);
  EXPECT_EQ(third.change, AnomalyVerdict::Change::kStarted);
  EXPECT_GT(third.z, 6);
  EXPECT_NEAR(third.median, 50, 0.3);
  for (int i = 0; i < 10; ++i) ended += d.Add(70).change == AnomalyVerdict::Change::kEnded;
  EXPECT_EQ(ended, 0);
  EXPECT_EQ(d.Add(50.1).change, AnomalyVerdict::Change::kEnded);
  // A single blip (below `consecutive`) raises nothing and does not move the baseline.
  for (int i = 0; i < 3; ++i)
    started += d.Add(i == 1 ? 200 : 50).change == AnomalyVerdict::Change::kStarted;
  EXPECT_EQ(started, 0);
}

TEST(Anomaly, ALastingShiftBecomesTheNewNormal) {
  AnomalyDetector d({.window = 50, .warmup = 20});
  std::mt19937_64 rng(4);
  std::normal_distribution<double> noise(0, 1);
  for (int i = 0; i < 200; ++i) d.Add(noise(rng));
  bool started = false, ended = false;
  for (int i = 0; i < 200; ++i) {
    auto v = d.Add(100 + noise(rng));
    started |= v.change == AnomalyVerdict::Change::kStarted;
    ended |= v.change == AnomalyVerdict::Change::kEnded;
  }
  EXPECT_TRUE(started);
  EXPECT_TRUE(ended);
  EXPECT_FALSE(d.anomalous());
}

}  // namespace
}  // namespace outpost

namespace outpost {
namespace {

TEST(Privacy, LaplaceNoiseOnCountsHasTheRightSpread) {
  std::mt19937_64 rng(11);
  EXPECT_EQ(NoisyCount(42, 0, rng), 42);  // off
  const double epsilon = 0.5;
  double sum = 0, sq = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    double d = static_cast<double>(NoisyCount(1000, epsilon, rng)) - 1000;
    sum += d;
    sq += d * d;
  }
  EXPECT_NEAR(sum / n, 0, 0.1);
  // Laplace(b = 1/epsilon) has variance 2 b^2 = 8 (rounding adds ~1/12).
  EXPECT_NEAR(sq / n, 8.0 + 1.0 / 12, 0.4);
  for (int i = 0; i < 1000; ++i) EXPECT_GE(NoisyCount(0, epsilon, rng), 0);
}

}  // namespace
}  // namespace outpost
