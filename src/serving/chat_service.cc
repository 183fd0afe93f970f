#include "serving/chat_service.h"

#include <spdlog/spdlog.h>

namespace outpost {
namespace {

using json = nlohmann::json;

std::vector<double> TokenTimeBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
}

}  // namespace

ChatService::ChatService(ModelManager& models, MetricsRegistry& metrics)
    : models_(models), metrics_(metrics) {}

json ChatService::ListModels() const {
  json data = json::array();
  std::set<std::string> seen;
  models_.ForEachServed([&](const ServedModel& m) {
    if (!m.chat || !seen.insert(m.config.name).second) return;
    data.push_back(
        {{"id", m.config.name}, {"object", "model"}, {"created", 0}, {"owned_by", "outpost"}});
  });
  return {{"object", "list"}, {"data", data}};
}

PreparedChat ChatService::Prepare(ChatCompletionRequest request) {
  PreparedChat chat;
  std::shared_ptr<ServedModel> served;
  try {
    served = models_.Get(request.model, "");
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kNotFound)
      throw ApiError(ErrorCode::kNotFound,
                     "the model '" + request.model + "' does not exist on this device", "model",
                     "model_not_found");
    throw;
  }
  if (!served->chat)
    throw ApiError(ErrorCode::kInvalidArgument,
                   "the model '" + request.model +
                       "' is not a chat model (it serves KServe v2 "
                       "inference at /v2/models/" +
                       request.model + "/infer)",
                   "model");
  ApplySamplingDefaults(request, served->chat->settings().defaults);
  chat.prompt = served->chat->Tokenize(served->chat->RenderPrompt(request.messages));
  const int context = served->chat->context_length();
  const int prompt = static_cast<int>(chat.prompt.size());
  if (prompt >= context)
    throw ApiError(ErrorCode::kInvalidArgument,
                   "this model's maximum context length is " + std::to_string(context) +
                       " tokens, but the messages have " + std::to_string(prompt) + " tokens",
                   "messages", "context_length_exceeded");
  if (request.options.max_tokens > context - prompt)
    throw ApiError(ErrorCode::kInvalidArgument,
                   "this model's maximum context length is " + std::to_string(context) +
                       " tokens; the messages have " + std::to_string(prompt) +
                       " and max_tokens asks for " + std::to_string(request.options.max_tokens),
                   "max_tokens", "context_length_exceeded");
  chat.identity = NewCompletionIdentity(served->config.name);
  chat.headers["X-Outpost-Route"] = "local";
  chat.served = std::move(served);
  chat.request = std::move(request);
  return chat;
}

void ChatService::Count(const PreparedChat& chat, const GenerationResult& result) {
  Labels labels{{"model", chat.served->config.name}};
  metrics_.GetCounter("outpost_chat_prompt_tokens_total", "Prompt tokens processed.", labels)
      .Add(result.prompt_tokens);
  metrics_.GetCounter("outpost_chat_completion_tokens_total", "Tokens generated.", labels)
      .Add(result.completion_tokens);
  Labels finished = labels;
  finished.emplace_back("finish_reason", result.finish_reason);
  metrics_
      .GetCounter("outpost_chat_requests_total", "Chat completions by how they ended.", finished)
      .Add();
  if (result.completion_tokens > 0) {
    metrics_
        .GetHistogram("outpost_chat_time_to_first_token_seconds",
                      "Time from the start of generation to the first token.", labels,
                      MetricsRegistry::LatencyBuckets())
        .Observe(result.time_to_first_token_s);
  }
  if (result.completion_tokens > 1) {
    metrics_
        .GetHistogram("outpost_chat_time_per_output_token_seconds",
                      "Mean time per generated token after the first, per request.", labels,
                      TokenTimeBuckets())
        .Observe((result.total_s - result.time_to_first_token_s) / (result.completion_tokens - 1));
  }
  spdlog::info(
      "chat {} model={} route=local prompt_tokens={} completion_tokens={} finish={} "
      "ttft_ms={:.1f} total_ms={:.1f}",
      chat.identity.id, chat.served->config.name, result.prompt_tokens, result.completion_tokens,
      result.finish_reason, result.time_to_first_token_s * 1e3, result.total_s * 1e3);
}

json ChatService::Run(PreparedChat& chat) {
  GenerationResult result = chat.served->chat->Generate(chat.prompt, chat.request.options, nullptr);
  Count(chat, result);
  return CompletionBody(chat.identity, result, chat.request.options.logprobs);
}

void ChatService::RunStream(PreparedChat& chat,
                            const std::function<bool(const std::string&)>& write) {
  bool gone = !write(SseEvent(
      ChunkBody(chat.identity, {{"role", "assistant"}, {"content", ""}}, nullptr, nullptr)));
  GenerateOptions options = chat.request.options;
  auto outer = options.cancelled;
  options.cancelled = [&] { return gone || (outer && outer()); };
  const bool logprobs = options.logprobs;
  GenerationResult result =
      chat.served->chat->Generate(chat.prompt, options, [&](const TextChunk& chunk) {
        if (gone) return;
        json lp = logprobs ? LogProbsJson(chunk.logprobs) : json(nullptr);
        gone = !write(SseEvent(ChunkBody(chat.identity, {{"content", chunk.text}}, nullptr, lp)));
      });
  Count(chat, result);
  if (gone || result.finish_reason == "cancelled") return;
  write(SseEvent(ChunkBody(chat.identity, json::object(), result.finish_reason, nullptr)));
  if (chat.request.include_usage)
    write(SseEvent(UsageChunkBody(chat.identity, result.prompt_tokens, result.completion_tokens)));
  write("data: [DONE]\n\n");
}

}  // namespace outpost
