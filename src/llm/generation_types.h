// What a generation is asked for and what it gives back; shared by the generation loop and
// the protocol front ends (which do not need ONNX Runtime).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "llm/sampler.h"

namespace outpost {

struct TokenLogProb {
  std::string token;
  std::string bytes;  // the token's raw bytes (a character may span tokens)
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
  std::vector<std::string> top_bytes;
};

struct GenerateOptions {
  SamplingParams sampling;
  int max_tokens = 0;  // 0: until the context window is full
  std::vector<std::string> stop;
  bool logprobs = false;
  int top_logprobs = 0;
  std::function<bool()> cancelled;  // polled before each step
};

struct TextChunk {
  std::string text;
  std::vector<TokenLogProb> logprobs;  // of the tokens this chunk completes
};

struct GenerationResult {
  std::string text;
  std::string finish_reason;  // stop, length, cancelled
  std::vector<int32_t> ids;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  double time_to_first_token_s = 0;
  double total_s = 0;
  std::vector<TokenLogProb> logprobs;
};

}  // namespace outpost
