#include "llm/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace outpost {
namespace {

float LogSumExp(std::span<const float> logits) {
  float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - max));
  return max + static_cast<float>(std::log(sum));
}

}  // namespace

Sampler::Sampler(const SamplingParams& params)
    : params_(params), rng_(params.seed ? *params.seed : std::random_device{}()) {}

int32_t Sampler::Next(std::span<float> logits, std::span<const int32_t> context) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  if (params_.repetition_penalty != 1.0f) {
    std::vector<int32_t> seen(context.begin(), context.end());
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int32_t id : seen) {
      if (id < 0 || id >= vocab) continue;
      float& l = logits[static_cast<size_t>(id)];
      l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
    }
  }
  if (params_.presence_penalty != 0 || params_.frequency_penalty != 0) {
    for (auto [id, count] : counts_) {
      if (id < 0 || id >= vocab) continue;
      logits[static_cast<size_t>(id)] -=
          params_.presence_penalty + params_.frequency_penalty * static_cast<float>(count);
    }
  }
  if (params_.temperature <= 0.0f || params_.top_k == 1)
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());

  // Candidates, likeliest first. Sorting the whole vocabulary each step is the slow part, so
  // only a prefix is sorted, grown until it covers what top-k / top-p keep.
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)];
  };
  const float inv_t = 1.0f / params_.temperature;
  const float max = *std::max_element(logits.begin(), logits.end());
  double total = 0;
  for (float l : logits) total += std::exp(static_cast<double>((l - max) * inv_t));
  size_t limit = params_.top_k > 0
                     ? std::min<size_t>(static_cast<size_t>(params_.top_k), order.size())
                     : order.size();
  size_t sorted = std::min<size_t>(64, limit);
  std::vector<double> probs;
  for (;;) {
    std::partial_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(sorted), order.end(),
                      by_logit);
    double covered = 0;
    for (size_t i = 0; i < sorted; ++i)
      covered +=
          std::exp(static_cast<double>((logits[static_cast<size_t>(order[i])] - max) * inv_t));
    if (sorted == limit || covered / total >= params_.top_p) break;
    sorted = std::min(limit, sorted * 4);
  }
  order.resize(sorted);
  probs.resize(sorted);
  double kept_total = 0;
  for (size_t i = 0; i < sorted; ++i) {
    probs[i] = std::exp(static_cast<double>((logits[static_cast<size_t>(order[i])] - max) * inv_t));
    kept_total += probs[i];
  }
  // top-k's renormalization happens before top-p and min-p, as in transformers' warpers.
  size_t keep = sorted;
  if (params_.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < sorted; ++i) {
      cum += probs[i] / kept_total;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (params_.min_p > 0.0f) {
    const double floor = probs[0] * params_.min_p;
    size_t k = 1;
    while (k < keep && probs[k] >= floor) ++k;
    keep = k;
  }
  std::discrete_distribution<size_t> pick(probs.begin(),
                                          probs.begin() + static_cast<ptrdiff_t>(keep));
  return order[pick(rng_)];
}

float LogProb(std::span<const float> logits, int32_t id) {
  return logits[static_cast<size_t>(id)] - LogSumExp(logits);
}

std::vector<std::pair<int32_t, float>> TopLogProbs(std::span<const float> logits, int top) {
  const float lse = LogSumExp(logits);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  size_t n = std::min<size_t>(static_cast<size_t>(std::max(top, 0)), order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(n), order.end(),
                    [&](int32_t a, int32_t b) {
                      return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)];
                    });
  std::vector<std::pair<int32_t, float>> out;
  for (size_t i = 0; i < n; ++i)
    out.emplace_back(order[i], logits[static_cast<size_t>(order[i])] - lse);
  return out;
}

}  // namespace outpost
