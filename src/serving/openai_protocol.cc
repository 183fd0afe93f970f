#include "serving/openai_protocol.h"

#include <chrono>
#include <cmath>
#include <random>

#include "core/json_fields.h"
#include "core/json_input.h"

namespace outpost {
namespace {

using json = nlohmann::json;

// A chat request is text and a few dozen fields: deep or wide JSON is an attack, not a chat.
constexpr JsonLimits kChatJsonLimits{kMaxChatRequestBytes, 32, 1u << 18, kMaxChatRequestBytes};

[[noreturn]] void Bad(const std::string& param, const std::string& message) {
  throw ApiError(ErrorCode::kInvalidArgument, message, param);
}

// content: a string, or an array of parts of which text parts are joined.
std::string Content(const json& m, size_t index) {
  const std::string param = "messages[" + std::to_string(index) + "].content";
  if (!m.contains("content") || m.at("content").is_null()) {
    if (m.value("role", "") == "assistant") return "";  // a tool-calling turn
    Bad(param, "'" + param + "' is required");
  }
  const json& c = m.at("content");
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) Bad(param, "'" + param + "' must be a string or an array of content parts");
  std::string out;
  for (const auto& part : c) {
    if (!part.is_object() || !part.contains("type") || !part.at("type").is_string())
      Bad(param, "each part of '" + param + "' needs a 'type'");
    const std::string type = part.at("type").get<std::string>();
    if (type != "text")
      Bad(param, "content parts of type '" + type + "' are not supported (text only)");
    if (!part.contains("text") || !part.at("text").is_string())
      Bad(param, "a text part of '" + param + "' needs a string 'text'");
    out += part.at("text").get<std::string>();
  }
  return out;
}

std::string RandomHex(size_t n) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) s += kHex[rng() % 16];
  return s;
}

}  // namespace

namespace {

ChatCompletionRequest ParseChatCompletion(const json& j) {
  const JsonFields f(j, "");
  ChatCompletionRequest r;
  if (!j.contains("model") || !j.at("model").is_string() ||
      j.at("model").get<std::string>().empty())
    Bad("model", "'model' is required and must be a non-empty string");
  r.model = j.at("model").get<std::string>();

  if (!j.contains("messages") || !j.at("messages").is_array() || j.at("messages").empty())
    Bad("messages", "'messages' is required and must be a non-empty array");
  size_t index = 0;
  for (const auto& m : j.at("messages")) {
    const std::string param = "messages[" + std::to_string(index) + "]";
    if (!m.is_object()) Bad(param, "'" + param + "' must be an object");
    if (!m.contains("role") || !m.at("role").is_string())
      Bad(param + ".role", "'" + param + ".role' is required");
    std::string role = m.at("role").get<std::string>();
    if (role != "system" && role != "developer" && role != "user" && role != "assistant" &&
        role != "tool")
      Bad(param + ".role", "'" + param +
                               ".role' must be one of system, developer, user, "
                               "assistant, tool; got '" +
                               role + "'");
    r.messages.push_back({role, Content(m, index)});
    ++index;
  }

  if (f.Has("stream")) r.stream = f.Require<bool>("stream");
  if (f.Has("stream_options")) {
    const json& so = j.at("stream_options");
    if (!so.is_object()) Bad("stream_options", "'stream_options' must be an object");
    if (!r.stream) Bad("stream_options", "'stream_options' is only allowed with 'stream': true");
    r.include_usage = JsonFields(so, "", "stream_options").Get("include_usage", false);
  }
  auto& o = r.options;
  if (f.Has("max_completion_tokens"))
    o.max_tokens = static_cast<int>(f.Integer("max_completion_tokens", 0, 1, 1 << 24));
  else if (f.Has("max_tokens"))
    o.max_tokens = static_cast<int>(f.Integer("max_tokens", 0, 1, 1 << 24));
  if ((r.has_temperature = f.Has("temperature")))
    o.sampling.temperature = static_cast<float>(f.Number("temperature", 0, 0, 2));
  if ((r.has_top_p = f.Has("top_p")))
    o.sampling.top_p = static_cast<float>(f.Number("top_p", 0, 0, 1));
  if (r.has_top_p && o.sampling.top_p <= 0) Bad("top_p", "'top_p' must be greater than 0");
  if ((r.has_top_k = f.Has("top_k")))
    o.sampling.top_k = static_cast<int>(f.Integer("top_k", 0, 0, 1 << 20));
  if ((r.has_min_p = f.Has("min_p")))
    o.sampling.min_p = static_cast<float>(f.Number("min_p", 0, 0, 1));
  if ((r.has_repetition_penalty = f.Has("repetition_penalty")))
    o.sampling.repetition_penalty =
        static_cast<float>(f.Number("repetition_penalty", 0, 0.01, 100));
  if (f.Has("presence_penalty"))
    o.sampling.presence_penalty = static_cast<float>(f.Number("presence_penalty", 0, -2, 2));
  if (f.Has("frequency_penalty"))
    o.sampling.frequency_penalty = static_cast<float>(f.Number("frequency_penalty", 0, -2, 2));
  if (f.Has("seed"))
    o.sampling.seed = static_cast<uint64_t>(f.Integer("seed", 0, INT64_MIN, INT64_MAX));
  if (f.Has("n") && f.Integer("n", 0, 1, 128) != 1)
    Bad("n", "only 'n': 1 is supported (one choice per request)");
  if (f.Has("stop")) {
    const json& s = j.at("stop");
    if (s.is_string()) {
      o.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      if (s.size() > 4) Bad("stop", "'stop' takes at most 4 sequences");
      for (const auto& x : s) {
        if (!x.is_string()) Bad("stop", "'stop' must be a string or an array of strings");
        o.stop.push_back(x.get<std::string>());
      }
    } else {
      Bad("stop", "'stop' must be a string or an array of strings");
    }
  }
  if (f.Has("logprobs")) o.logprobs = f.Require<bool>("logprobs");
  if (f.Has("top_logprobs")) {
    o.top_logprobs = static_cast<int>(f.Integer("top_logprobs", 0, 0, 20));
    if (!o.logprobs) Bad("top_logprobs", "'top_logprobs' requires 'logprobs': true");
  }
  for (const char* unsupported : {"tools", "functions", "audio"}) {
    if (f.Has(unsupported) && !(j.at(unsupported).is_array() && j.at(unsupported).empty()))
      Bad(unsupported, std::string("'") + unsupported + "' is not supported by this server");
  }
  if (f.Has("response_format")) {
    const json& format = j.at("response_format");
    if (!format.is_object() || format.value("type", "") != "text")
      Bad("response_format", "only 'response_format': {\"type\": \"text\"} is supported");
  }
  if (f.Has("metadata")) {
    if (!j.at("metadata").is_object()) Bad("metadata", "'metadata' must be an object");
    r.metadata = j.at("metadata");
  }
  return r;
}

}  // namespace

ChatCompletionRequest ParseChatCompletionRequest(std::string_view body) {
  json j;
  try {
    j = ParseJson(body, kChatJsonLimits, "the body");
  } catch (const Error& e) {
    throw ApiError(e.code(), e.what());
  }
  if (!j.is_object()) Bad("", "the body must be a JSON object");
  // A field of the wrong type or out of range is named as OpenAI's "param".
  try {
    return ParseChatCompletion(j);
  } catch (const FieldError& e) {
    throw ApiError(ErrorCode::kInvalidArgument, e.what(), e.field());
  }
}

void ApplySamplingDefaults(ChatCompletionRequest& r, const SamplingParams& d) {
  auto& s = r.options.sampling;
  if (!r.has_temperature) s.temperature = d.temperature;
  if (!r.has_top_p) s.top_p = d.top_p;
  if (!r.has_top_k) s.top_k = d.top_k;
  if (!r.has_min_p) s.min_p = d.min_p;
  if (!r.has_repetition_penalty) s.repetition_penalty = d.repetition_penalty;
}

int ErrorStatus(const Error& e) {
  switch (e.code()) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kPermissionDenied:
      return 403;
    case ErrorCode::kUnauthenticated:
      return 401;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kPayloadTooLarge:
      return 413;
    case ErrorCode::kResourceExhausted:
      return 429;
    case ErrorCode::kFailedPrecondition:
      return 409;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kDeadlineExceeded:
      return 504;
    case ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

json ErrorBody(const Error& e) {
  const auto* api = dynamic_cast<const ApiError*>(&e);
  std::string type = "invalid_request_error";
  if (e.code() == ErrorCode::kInternal) type = "server_error";
  if (e.code() == ErrorCode::kUnavailable || e.code() == ErrorCode::kDeadlineExceeded)
    type = "service_unavailable";
  if (e.code() == ErrorCode::kResourceExhausted) type = "rate_limit_exceeded";
  json code = nullptr;
  if (api && !api->api_code.empty()) code = api->api_code;
  if (!api && e.code() == ErrorCode::kNotFound) code = "model_not_found";
  if (code.is_null() && e.code() == ErrorCode::kUnauthenticated) code = "invalid_api_key";
  if (code.is_null() && e.code() == ErrorCode::kPermissionDenied) code = "permission_denied";
  json param = api && !api->param.empty() ? json(api->param) : json(nullptr);
  return {{"error", {{"message", e.what()}, {"type", type}, {"param", param}, {"code", code}}}};
}

CompletionIdentity NewCompletionIdentity(const std::string& model) {
  return {"chatcmpl-" + RandomHex(24),
          std::chrono::duration_cast<std::chrono::seconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count(),
          model};
}

json LogProbsJson(const std::vector<TokenLogProb>& logprobs) {
  json content = json::array();
  auto bytes = [](const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(static_cast<int>(c));
    return b;
  };
  for (const auto& lp : logprobs) {
    json top = json::array();
    for (size_t i = 0; i < lp.top.size(); ++i)
      top.push_back({{"token", lp.top[i].first},
                     {"logprob", lp.top[i].second},
                     {"bytes", bytes(lp.top_bytes[i])}});
    content.push_back({{"token", lp.token},
                       {"logprob", lp.logprob},
                       {"bytes", bytes(lp.bytes)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

json UsageJson(int prompt_tokens, int completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

json CompletionBody(const CompletionIdentity& id, const GenerationResult& result, bool logprobs) {
  json choice = {
      {"index", 0},
      {"message", {{"role", "assistant"}, {"content", result.text}, {"refusal", nullptr}}},
      {"logprobs", logprobs ? LogProbsJson(result.logprobs) : json(nullptr)},
      {"finish_reason", result.finish_reason}};
  return {{"id", id.id},
          {"object", "chat.completion"},
          {"created", id.created},
          {"model", id.model},
          {"system_fingerprint", "outpost-" OUTPOST_VERSION},
          {"choices", json::array({choice})},
          {"usage", UsageJson(result.prompt_tokens, result.completion_tokens)}};
}

json ChunkBody(const CompletionIdentity& id, const json& delta, const json& finish_reason,
               const json& logprobs) {
  json choice = {
      {"index", 0}, {"delta", delta}, {"logprobs", logprobs}, {"finish_reason", finish_reason}};
  return {{"id", id.id},
          {"object", "chat.completion.chunk"},
          {"created", id.created},
          {"model", id.model},
          {"system_fingerprint", "outpost-" OUTPOST_VERSION},
          {"choices", json::array({choice})},
          {"usage", nullptr}};
}

json UsageChunkBody(const CompletionIdentity& id, int prompt_tokens, int completion_tokens) {
  return {{"id", id.id},
          {"object", "chat.completion.chunk"},
          {"created", id.created},
          {"model", id.model},
          {"system_fingerprint", "outpost-" OUTPOST_VERSION},
          {"choices", json::array()},
          {"usage", UsageJson(prompt_tokens, completion_tokens)}};
}

std::string SseEvent(const json& body) {
  return "data: " + body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

}  // namespace outpost
