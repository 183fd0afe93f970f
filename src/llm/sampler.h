// Picks the next token from a step's logits: penalties, then greedy or sampled decoding
// (temperature, top-k, top-p, min-p) with a seedable generator.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

namespace outpost {

struct SamplingParams {
  float temperature = 1.0f;         // 0: greedy
  int top_k = 0;                    // 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off; keeps tokens at least min_p times the likeliest one
  float repetition_penalty = 1.0f;  // >1 discourages tokens already in prompt or output
  float presence_penalty = 0.0f;    // OpenAI's: subtracted once per token already generated
  float frequency_penalty = 0.0f;   // OpenAI's: subtracted per occurrence in the output
  std::optional<uint64_t> seed;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // `context` is what the repetition penalty looks at (prompt and output); `generated` counts
  // the output's tokens for the presence and frequency penalties. Modifies `logits`.
  int32_t Next(std::span<float> logits, std::span<const int32_t> context);
  void Generated(int32_t id) { ++counts_[id]; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_map<int32_t, int> counts_;
};

// log-softmax of `logits` at `id`, and the `top` likeliest (id, logprob), likeliest first.
float LogProb(std::span<const float> logits, int32_t id);
std::vector<std::pair<int32_t, float>> TopLogProbs(std::span<const float> logits, int top);

}  // namespace outpost
