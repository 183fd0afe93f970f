// The OpenAI chat completions wire format: request parsing and validation (untrusted input:
// it has a fuzz target), response bodies, stream chunks and the error object.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "llm/chat_template.h"
#include "llm/generation_types.h"

namespace outpost {

// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
struct ApiError : Error {
  ApiError(ErrorCode code, const std::string& message, std::string param_name = "",
           std::string code_name = "")
      : Error(code, message), param(std::move(param_name)), api_code(std::move(code_name)) {}
  std::string param;
  std::string api_code;
};

struct ChatCompletionRequest {
  std::string model;
  std::vector<ChatMessage> messages;
  bool stream = false;
  bool include_usage = false;
  GenerateOptions options;  // sampling starts from the model's defaults
  // Which sampling fields the request set (the rest keep the model's defaults).
  bool has_temperature = false, has_top_p = false, has_top_k = false, has_min_p = false,
       has_repetition_penalty = false;
  nlohmann::json metadata;  // Outpost's extensions: {"privacy": "private"|"standard"}
};

// The largest chat request body accepted (the HTTP front end refuses larger ones unread).
constexpr size_t kMaxChatRequestBytes = 8u << 20;

// Throws ApiError naming the parameter at fault.
ChatCompletionRequest ParseChatCompletionRequest(std::string_view body);
// Applies a model's defaults to what the request left unset.
void ApplySamplingDefaults(ChatCompletionRequest& request, const SamplingParams& defaults);

nlohmann::json ErrorBody(const Error& e);
int ErrorStatus(const Error& e);

struct CompletionIdentity {
  std::string id;  // chatcmpl-...
  int64_t created = 0;
  std::string model;
};
CompletionIdentity NewCompletionIdentity(const std::string& model);

nlohmann::json LogProbsJson(const std::vector<TokenLogProb>& logprobs);
nlohmann::json UsageJson(int prompt_tokens, int completion_tokens);
nlohmann::json CompletionBody(const CompletionIdentity& id, const GenerationResult& result,
                              bool logprobs);
// One "chat.completion.chunk" object.
nlohmann::json ChunkBody(const CompletionIdentity& id, const nlohmann::json& delta,
                         const nlohmann::json& finish_reason, const nlohmann::json& logprobs);
nlohmann::json UsageChunkBody(const CompletionIdentity& id, int prompt_tokens,
                              int completion_tokens);
std::string SseEvent(const nlohmann::json& body);

}  // namespace outpost
