// The generation loop: prefill the prompt once, then one cached step per token, until a stop
// token, a stop string, max_tokens, the context window or the caller says stop.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "llm/decoder_model.h"
#include "llm/generation_types.h"
#include "llm/tokenizer.h"

namespace outpost {

// Releases generated text, holding back what might still become a stop string.
class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stops);
  // Adds `piece`; returns the text now safe to release. Sets stopped() when a stop string
  // appeared: the text before it is released, the rest dropped.
  std::string Push(const std::string& piece);
  std::string Finish();  // whatever is held back, at the end
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  size_t longest_ = 0;
  std::string text_;
  size_t released_ = 0;
  bool stopped_ = false;
};

struct GenerationLimits {
  int context_length = 0;
  std::set<int32_t> stop_ids;
};

// Throws Error(kInvalidArgument) when the prompt leaves no room in the context window.
GenerationResult Generate(DecoderModel& model, const Tokenizer& tokenizer,
                          const GenerationLimits& limits, const std::vector<int32_t>& prompt,
                          const GenerateOptions& options,
                          const std::function<void(const TextChunk&)>& on_chunk);

}  // namespace outpost
