#include "monitoring/drift.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/error.h"

namespace outpost {

PageHinkley::PageHinkley(double mean, double stddev, double delta, double threshold)
    : mean_(mean), inv_sd_(0), delta_(delta), threshold_(threshold) {
  if (!(stddev > 0) || !std::isfinite(stddev) || !std::isfinite(mean))
    Fail(ErrorCode::kInvalidArgument, "Page-Hinkley needs a finite mean and a positive stddev");
  if (!(delta >= 0) || !(threshold > 0))
    Fail(ErrorCode::kInvalidArgument, "Page-Hinkley needs delta >= 0 and threshold > 0");
  inv_sd_ = 1.0 / stddev;
}

void PageHinkley::Reset() {
  up_ = down_ = 0;
  n_ = up_start_ = down_start_ = 0;
}

bool PageHinkley::Add(double x) {
  if (!std::isfinite(x)) return false;  // a NaN must not poison the sums
  ++n_;
  const double z = (x - mean_) * inv_sd_;
  if (up_ == 0) up_start_ = n_;
  if (down_ == 0) down_start_ = n_;
  up_ = std::max(0.0, up_ + z - delta_);
  down_ = std::max(0.0, down_ - z - delta_);
  if (up_ > threshold_ || down_ > threshold_) {
    change_start_ = up_ > threshold_ ? up_start_ : down_start_;
    alarm_samples_ = n_;
    alarm_statistic_ = std::max(up_, down_);
    up_ = down_ = 0;
    n_ = 0;
    return true;
  }
  return false;
}

std::vector<double> QuantileEdges(std::vector<double> reference, int bins) {
  std::erase_if(reference, [](double v) { return !std::isfinite(v); });
  if (reference.empty() || bins < 2) return {};
  std::sort(reference.begin(), reference.end());
  std::vector<double> edges;
  for (int i = 1; i < bins; ++i) {
    double e = reference[std::min(reference.size() - 1, reference.size() * static_cast<size_t>(i) /
                                                            static_cast<size_t>(bins))];
    if (edges.empty() || e > edges.back()) edges.push_back(e);  // ties merge bins
  }
  return edges;
}

std::vector<double> BinFractions(const std::vector<double>& edges,
                                 const std::vector<double>& values) {
  std::vector<double> counts(edges.size() + 1, 0.0);
  double total = 0;
  for (double v : values) {
    if (!std::isfinite(v)) continue;
    size_t bin =
        static_cast<size_t>(std::upper_bound(edges.begin(), edges.end(), v) - edges.begin());
    counts[bin] += 1;
    total += 1;
  }
  if (total > 0)
    for (auto& c : counts) c /= total;
  return counts;
}

double PopulationStabilityIndex(const std::vector<double>& expected,
                                const std::vector<double>& actual, double epsilon) {
  if (expected.size() != actual.size())
    Fail(ErrorCode::kInvalidArgument, "PSI needs the same bins on both sides");
  double psi = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    double e = std::max(expected[i], epsilon), a = std::max(actual[i], epsilon);
    psi += (a - e) * std::log(a / e);
  }
  return psi;
}

namespace {

// Q_KS(lambda) = 2 sum_{k>=1} (-1)^{k-1} exp(-2 k^2 lambda^2).
double KolmogorovQ(double lambda) {
  if (lambda < 1e-3) return 1.0;
  double sum = 0, sign = 1;
  for (int k = 1; k <= 100; ++k) {
    double term = sign * std::exp(-2.0 * k * k * lambda * lambda);
    sum += term;
    if (std::fabs(term) < 1e-12) break;
    sign = -sign;
  }
  return std::clamp(2.0 * sum, 0.0, 1.0);
}

}  // namespace

KsResult TwoSampleKs(std::vector<double> a, std::vector<double> b) {
  std::erase_if(a, [](double v) { return !std::isfinite(v); });
  std::erase_if(b, [](double v) { return !std::isfinite(v); });
  KsResult r;
  if (a.empty() || b.empty()) return r;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  const double na = static_cast<double>(a.size()), nb = static_cast<double>(b.size());
  size_t i = 0, j = 0;
  double d = 0;
  while (i < a.size() && j < b.size()) {
    double v = std::min(a[i], b[j]);
    while (i < a.size() && a[i] == v) ++i;  // ties move both CDFs together
    while (j < b.size() && b[j] == v) ++j;
    d = std::max(d, std::fabs(static_cast<double>(i) / na - static_cast<double>(j) / nb));
  }
  r.statistic = d;
  const double n = na * nb / (na + nb);
  const double sqrt_n = std::sqrt(n);
  // Stephens' small-sample correction of the asymptotic distribution.
  r.p_value = KolmogorovQ((sqrt_n + 0.12 + 0.11 / sqrt_n) * d);
  return r;
}

double JensenShannon(const std::vector<double>& p, const std::vector<double>& q) {
  if (p.size() != q.size()) Fail(ErrorCode::kInvalidArgument, "JS needs the same categories");
  double sp = 0, sq = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] < 0 || q[i] < 0) Fail(ErrorCode::kInvalidArgument, "JS needs non-negative counts");
    sp += p[i];
    sq += q[i];
  }
  if (sp <= 0 || sq <= 0) return 0;
  double js = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    double a = p[i] / sp, b = q[i] / sq, m = (a + b) / 2;
    if (a > 0) js += 0.5 * a * std::log2(a / m);
    if (b > 0) js += 0.5 * b * std::log2(b / m);
  }
  return std::clamp(js, 0.0, 1.0);
}

}  // namespace outpost
