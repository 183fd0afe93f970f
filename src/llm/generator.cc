#include "llm/generator.h"

#include <chrono>

#include "core/error.h"

namespace outpost {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Back to the start of a UTF-8 character, so a held-back prefix never splits one.
size_t CharBoundary(const std::string& s, size_t at) {
  while (at > 0 && at < s.size() && (static_cast<unsigned char>(s[at]) & 0xC0) == 0x80) --at;
  return at;
}

TokenLogProb Describe(const Tokenizer& tokenizer, int32_t id, std::span<const float> raw, int top) {
  TokenLogProb lp;
  lp.token = tokenizer.Decode(std::span<const int32_t>(&id, 1), false);
  lp.bytes = tokenizer.TokenBytes(id);
  lp.logprob = LogProb(raw, id);
  for (auto [tid, l] : TopLogProbs(raw, top)) {
    lp.top.emplace_back(tokenizer.Decode(std::span<const int32_t>(&tid, 1), false), l);
    lp.top_bytes.push_back(tokenizer.TokenBytes(tid));
  }
  return lp;
}

}  // namespace

StopStringFilter::StopStringFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
  for (const auto& s : stops_) longest_ = std::max(longest_, s.size());
}

std::string StopStringFilter::Push(const std::string& piece) {
  if (stopped_) return "";
  text_ += piece;
  // A stop string can only end inside the new piece, so the search starts just before it.
  size_t from = text_.size() - piece.size();
  from = from >= longest_ ? from - longest_ + 1 : 0;
  size_t first = std::string::npos;
  for (const auto& s : stops_) first = std::min(first, text_.find(s, from));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = first > released_ ? text_.substr(released_, first - released_) : "";
    released_ = text_.size();
    return out;
  }
  size_t safe = text_.size() >= longest_ ? text_.size() - (longest_ ? longest_ - 1 : 0) : 0;
  safe = CharBoundary(text_, std::max(safe, released_));
  if (safe <= released_) return "";
  std::string out = text_.substr(released_, safe - released_);
  released_ = safe;
  return out;
}

std::string StopStringFilter::Finish() {
  if (stopped_ || released_ >= text_.size()) return "";
  std::string out = text_.substr(released_);
  released_ = text_.size();
  return out;
}

GenerationResult Generate(DecoderModel& model, const Tokenizer& tokenizer,
                          const GenerationLimits& limits, const std::vector<int32_t>& prompt,
                          const GenerateOptions& options,
                          const std::function<void(const TextChunk&)>& on_chunk) {
  const int prompt_len = static_cast<int>(prompt.size());
  if (prompt.empty()) Fail(ErrorCode::kInvalidArgument, "the prompt is empty");
  if (prompt_len >= limits.context_length)
    Fail(ErrorCode::kInvalidArgument,
         "this model's maximum context length is " + std::to_string(limits.context_length) +
             " tokens, but the messages have " + std::to_string(prompt_len) + " tokens");
  int room = limits.context_length - prompt_len;
  if (options.max_tokens > room)
    Fail(ErrorCode::kInvalidArgument,
         "this model's maximum context length is " + std::to_string(limits.context_length) +
             " tokens; " + std::to_string(prompt_len) + " in the messages and " +
             std::to_string(options.max_tokens) + " in the completion (max_tokens) exceed it");
  const int max_tokens = options.max_tokens > 0 ? options.max_tokens : room;

  GenerationResult result;
  result.prompt_tokens = prompt_len;
  const auto start = Clock::now();
  KvCache cache;
  Sampler sampler(options.sampling);
  StreamDecoder stream(tokenizer);
  StopStringFilter filter(options.stop);
  std::vector<int32_t> context = prompt;
  std::vector<TokenLogProb> pending_logprobs;

  auto emit = [&](std::string text) {
    if (text.empty() && pending_logprobs.empty()) return;
    result.text += text;
    TextChunk chunk{std::move(text), std::move(pending_logprobs)};
    pending_logprobs.clear();
    if (on_chunk && (!chunk.text.empty() || !chunk.logprobs.empty())) on_chunk(chunk);
  };

  std::vector<float> logits = model.Step(prompt, cache);
  for (;;) {
    if (options.cancelled && options.cancelled()) {
      result.finish_reason = "cancelled";
      break;
    }
    std::vector<float> raw;
    if (options.logprobs) raw = logits;
    int32_t id = sampler.Next(logits, context);
    if (result.ids.empty()) result.time_to_first_token_s = Seconds(start);
    if (limits.stop_ids.count(id)) {
      result.finish_reason = "stop";
      break;
    }
    result.ids.push_back(id);
    context.push_back(id);
    sampler.Generated(id);
    if (options.logprobs) {
      pending_logprobs.push_back(Describe(tokenizer, id, raw, options.top_logprobs));
      result.logprobs.push_back(pending_logprobs.back());
    }
    emit(filter.Push(stream.Push(id)));
    if (filter.stopped()) {
      result.finish_reason = "stop";
      break;
    }
    if (static_cast<int>(result.ids.size()) >= max_tokens) {
      result.finish_reason = "length";
      break;
    }
    logits = model.Step(std::span<const int32_t>(&id, 1), cache);
  }
  if (!filter.stopped()) {
    std::string tail = filter.Push(stream.Flush());
    if (!filter.stopped()) tail += filter.Finish();
    emit(std::move(tail));
  }
  emit("");  // logprobs of tokens whose text a stop string swallowed
  result.completion_tokens = static_cast<int>(result.ids.size());
  result.total_s = Seconds(start);
  return result;
}

}  // namespace outpost
