#include "serving/chat_service.h"

#include <fmt/format.h>

#include <set>

#include "core/logging.h"

namespace outpost {
namespace {

using json = nlohmann::json;

std::vector<double> TokenTimeBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
}

// Messages are redacted as one text, so that a value gets one placeholder everywhere; this
// separator cannot occur inside them (it is removed from what leaves the device).
constexpr std::string_view kSeparator = "\n\x1E\n";

std::string ContextError(int context, int prompt, int max_tokens) {
  std::string s = "this model's maximum context length is " + std::to_string(context) +
                  " tokens, but the messages have " + std::to_string(prompt) + " tokens";
  if (max_tokens > 0) s += " and max_tokens asks for " + std::to_string(max_tokens) + " more";
  return s;
}

}  // namespace

struct ChatService::CloudCall {
  Redaction redaction;
  json request;
};

ChatService::ChatService(ModelManager& models, MetricsRegistry& metrics, RouterConfig router,
                         std::string api_key)
    : models_(models),
      metrics_(metrics),
      router_(std::move(router)),
      redactor_(router_.redaction_rules) {
  if (router_.cloud_enabled()) {
    cloud_ = std::make_unique<CloudClient>(router_.cloud, std::move(api_key));
    budget_ = std::make_unique<CloudBudget>(router_.state_dir, router_.daily_cloud_tokens);
    metrics_.AddCollector([this](std::string& out) {
      out +=
          "# HELP outpost_router_cloud_circuit_state The cloud link's circuit: 0 closed, 1 "
          "half-open, 2 open.\n# TYPE outpost_router_cloud_circuit_state gauge\n";
      auto s = cloud_->breaker().state();
      AppendSample(out, "outpost_router_cloud_circuit_state", "",
                   s == CircuitBreaker::State::kClosed     ? 0
                   : s == CircuitBreaker::State::kHalfOpen ? 1
                                                           : 2);
      out +=
          "# HELP outpost_router_cloud_budget_spent_tokens Cloud tokens spent today.\n"
          "# TYPE outpost_router_cloud_budget_spent_tokens gauge\n";
      AppendSample(out, "outpost_router_cloud_budget_spent_tokens", "",
                   static_cast<double>(budget_->SpentToday()));
    });
  }
}

std::string ChatService::CloudLinkState() const {
  if (!cloud_) return "";
  return std::string(BreakerStateName(cloud_->breaker().state()));
}

json ChatService::ListModels() const {
  json data = json::array();
  std::set<std::string> seen;
  models_.ForEachServed([&](const ServedModel& m) {
    if (!m.chat || !seen.insert(m.config.name).second) return;
    data.push_back(
        {{"id", m.config.name}, {"object", "model"}, {"created", 0}, {"owned_by", "outpost"}});
  });
  if (!seen.count(router_.model_alias) && (cloud_ || !seen.empty()))
    data.push_back({{"id", router_.model_alias},
                    {"object", "model"},
                    {"created", 0},
                    {"owned_by", "outpost-router"}});
  return {{"object", "list"}, {"data", data}};
}

std::shared_ptr<ServedModel> ChatService::LocalModelFor(const std::string& name) const {
  std::string local = name;
  if (name == router_.model_alias) {
    local = router_.local_model;
    if (local.empty())
      models_.ForEachServed([&](const ServedModel& m) {
        if (m.chat && local.empty()) local = m.config.name;
      });
    if (local.empty()) return nullptr;
  }
  try {
    auto served = models_.Get(local, "");
    if (!served->chat)
      throw ApiError(ErrorCode::kInvalidArgument,
                     "the model '" + local +
                         "' is not a chat model (it serves KServe v2 "
                         "inference at /v2/models/" +
                         local + "/infer)",
                     "model");
    return served;
  } catch (const ApiError&) {
    throw;
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kNotFound || name == router_.model_alias) throw;
    if (cloud_ && name == router_.cloud.model) return nullptr;
    throw ApiError(ErrorCode::kNotFound, "the model '" + name + "' does not exist on this device",
                   "model", "model_not_found");
  }
}

PreparedChat ChatService::Prepare(ChatCompletionRequest request, const std::string& privacy_header,
                                  CloudPermit permit) {
  if (shed_reason_) {
    if (std::string why = shed_reason_(); !why.empty())
      throw ApiError(ErrorCode::kUnavailable, "shedding load: " + why);
  }
  PreparedChat chat;
  chat.served = LocalModelFor(request.model);
  const bool names_cloud = !chat.served && cloud_ && request.model == router_.cloud.model;

  RouteInputs in;
  std::string privacy = router_.default_privacy;
  if (request.metadata.is_object() && request.metadata.contains("privacy"))
    privacy = request.metadata.value("privacy", privacy);
  if (!privacy_header.empty()) privacy = privacy_header;
  if (privacy != "private" && privacy != "standard")
    throw ApiError(ErrorCode::kInvalidArgument,
                   "privacy must be \"private\" or \"standard\", not '" + privacy + "'",
                   "metadata.privacy");
  in.private_request = privacy == "private";
  if (request.metadata.is_object()) in.forced = request.metadata.value("route", "");
  if (!in.forced.empty() && in.forced != "local" && in.forced != "cloud")
    throw ApiError(ErrorCode::kInvalidArgument, "route must be \"local\" or \"cloud\"",
                   "metadata.route");
  if (names_cloud && in.forced.empty()) in.forced = "cloud";
  in.max_tokens = request.options.max_tokens;
  if (chat.served) {
    ApplySamplingDefaults(request, chat.served->chat->settings().defaults);
    chat.prompt = chat.served->chat->Tokenize(chat.served->chat->RenderPrompt(request.messages));
    in.has_local = true;
    in.prompt_tokens = static_cast<int>(chat.prompt.size());
    in.local_context = chat.served->chat->context_length();
    chat.fits_local = in.prompt_tokens < in.local_context &&
                      (in.max_tokens == 0 || in.prompt_tokens + in.max_tokens <= in.local_context);
  }
  Difficulty difficulty = EstimateDifficulty(request.messages, in.prompt_tokens);
  in.difficulty = difficulty.score;
  in.cloud_configured = cloud_ != nullptr;
  in.cloud_allowed = cloud_ && cloud_->breaker().WouldAllow();
  in.budget_left = !budget_ || budget_->HasRoom();
  in.caller_may_use_cloud = permit.allowed;
  in.caller_budget_left = !permit.has_room || permit.has_room();
  chat.permit = std::move(permit);
  chat.decision = DecideRoute(router_, in);

  const std::string route(RouteName(chat.decision.route));
  metrics_
      .GetCounter("outpost_router_decisions_total", "Chat requests by route and reason.",
                  {{"route", route}, {"reason", chat.decision.reason}})
      .Add();
  Log(LogSeverity::kInfo, "router", "route",
      fmt::format("chat routed {} ({})", route, chat.decision.reason),
      {{"route", route},
       {"reason", chat.decision.reason},
       {"model", request.model},
       {"prompt_tokens", in.prompt_tokens},
       {"difficulty", in.difficulty},
       {"private", in.private_request}});
  if (chat.decision.route == Route::kRefuse) {
    if (!chat.served && !cloud_)
      throw ApiError(ErrorCode::kNotFound, "no chat model is available on this device", "model",
                     "model_not_found");
    // What does not fit locally: the messages themselves, or the room max_tokens asks for.
    const bool prompt_fits = chat.served && in.prompt_tokens < in.local_context;
    std::string why;
    if (chat.served) why = ContextError(in.local_context, in.prompt_tokens, in.max_tokens);
    if (chat.decision.reason == "private")
      why = "a private request stays on the device, and " + why;
    else if (cloud_)
      why += (why.empty() ? "" : "; ") + std::string("the cloud LLM cannot take it (") +
             chat.decision.reason + ")";
    const std::string& reason = chat.decision.reason;
    throw ApiError(reason == "cloud_unavailable" ? ErrorCode::kUnavailable
                   : reason == "cloud_budget_exhausted" || reason == "key_budget_exhausted"
                       ? ErrorCode::kResourceExhausted
                   : reason == "cloud_not_permitted" ? ErrorCode::kPermissionDenied
                                                     : ErrorCode::kInvalidArgument,
                   why, prompt_fits ? "max_tokens" : "messages", "context_length_exceeded");
  }
  chat.identity = NewCompletionIdentity(
      chat.decision.route == Route::kCloud ? router_.cloud.model : chat.served->config.name);
  chat.headers["X-Outpost-Route"] = route;
  chat.headers["X-Outpost-Route-Reason"] = chat.decision.reason;
  chat.request = std::move(request);
  return chat;
}

json ChatService::Notice(const PreparedChat& chat, const std::string& why) const {
  return {{"route", "local"},
          {"reason", "cloud_failed_fallback"},
          {"notice", "the cloud LLM could not answer (" + why + "); the device's model '" +
                         chat.served->config.name + "' answered instead"}};
}

GenerationResult ChatService::Local(PreparedChat& chat, const std::vector<int32_t>& prompt,
                                    const std::function<void(const TextChunk&)>& on_chunk,
                                    const std::function<bool()>& cancelled) {
  GenerateOptions options = chat.request.options;
  if (cancelled) options.cancelled = cancelled;
  const int room = chat.served->chat->context_length() - static_cast<int>(prompt.size());
  if (options.max_tokens > room) options.max_tokens = std::max(room, 1);
  GenerationResult result = chat.served->chat->Generate(prompt, options, on_chunk);
  CountLocal(chat, result);
  return result;
}

void ChatService::CountLocal(const PreparedChat& chat, const GenerationResult& result) {
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
  if (result.completion_tokens > 0)
    metrics_
        .GetHistogram("outpost_chat_time_to_first_token_seconds",
                      "Time from the start of generation to the first token.", labels,
                      MetricsRegistry::LatencyBuckets())
        .Observe(result.time_to_first_token_s);
  if (result.completion_tokens > 1)
    metrics_
        .GetHistogram("outpost_chat_time_per_output_token_seconds",
                      "Mean time per generated token after the first, per request.", labels,
                      TokenTimeBuckets())
        .Observe((result.total_s - result.time_to_first_token_s) / (result.completion_tokens - 1));
  Log(LogSeverity::kInfo, "runtime", "generation",
      fmt::format("chat {} generated {} tokens locally ({})", chat.identity.id,
                  result.completion_tokens, result.finish_reason),
      {{"completion_id", chat.identity.id},
       {"model", chat.served->config.name},
       {"prompt_tokens", result.prompt_tokens},
       {"completion_tokens", result.completion_tokens},
       {"finish_reason", result.finish_reason},
       {"ttft_ms", result.time_to_first_token_s * 1e3},
       {"total_ms", result.total_s * 1e3}});
}

void ChatService::CountCloud(const PreparedChat& chat, const std::string& outcome,
                             int prompt_tokens, int completion_tokens) {
  metrics_
      .GetCounter("outpost_router_cloud_requests_total", "Requests sent to the cloud LLM.",
                  {{"outcome", outcome}})
      .Add();
  metrics_
      .GetCounter("outpost_router_cloud_tokens_total", "Tokens the cloud LLM processed.",
                  {{"direction", "prompt"}})
      .Add(prompt_tokens);
  metrics_
      .GetCounter("outpost_router_cloud_tokens_total", "Tokens the cloud LLM processed.",
                  {{"direction", "completion"}})
      .Add(completion_tokens);
  if (budget_ && prompt_tokens + completion_tokens > 0)
    budget_->Spend(static_cast<uint64_t>(prompt_tokens + completion_tokens));
  if (chat.permit.spend && prompt_tokens + completion_tokens > 0)
    chat.permit.spend(static_cast<uint64_t>(prompt_tokens + completion_tokens));
  Log(LogSeverity::kInfo, "router", "cloud_answer",
      fmt::format("chat {} answered by the cloud ({})", chat.identity.id, outcome),
      {{"completion_id", chat.identity.id},
       {"outcome", outcome},
       {"prompt_tokens", prompt_tokens},
       {"completion_tokens", completion_tokens}});
}

json ChatService::CloudRequest(const PreparedChat& chat, Redaction& redaction) const {
  std::string joined;
  for (size_t i = 0; i < chat.request.messages.size(); ++i) {
    std::string content = chat.request.messages[i].content;
    std::erase(content, '\x1E');
    if (i) joined += kSeparator;
    joined += content;
  }
  redaction = redactor_.Redact(joined);
  json messages = json::array();
  size_t at = 0;
  for (const auto& m : chat.request.messages) {
    size_t end = redaction.text.find(kSeparator, at);
    if (end == std::string::npos) end = redaction.text.size();
    messages.push_back({{"role", m.role}, {"content", redaction.text.substr(at, end - at)}});
    at = end + kSeparator.size();
  }
  size_t bytes = 0;
  for (const auto& m : messages) bytes += m["content"].get_ref<const std::string&>().size();
  for (const auto& [kind, n] : redaction.counts)
    metrics_
        .GetCounter("outpost_router_redactions_total",
                    "Values replaced by placeholders before leaving the device.", {{"kind", kind}})
        .Add(n);
  metrics_
      .GetCounter("outpost_router_cloud_bytes_sent_total",
                  "Bytes of (redacted) message text sent to the cloud LLM.", {})
      .Add(static_cast<double>(bytes));
  const auto& o = chat.request.options;
  json body = {{"messages", messages}, {"stream", chat.request.stream}};
  if (o.max_tokens > 0) body["max_tokens"] = o.max_tokens;
  if (chat.request.has_temperature) body["temperature"] = o.sampling.temperature;
  if (chat.request.has_top_p) body["top_p"] = o.sampling.top_p;
  if (o.sampling.presence_penalty != 0) body["presence_penalty"] = o.sampling.presence_penalty;
  if (o.sampling.frequency_penalty != 0) body["frequency_penalty"] = o.sampling.frequency_penalty;
  if (o.sampling.seed) body["seed"] = *o.sampling.seed;
  if (!o.stop.empty()) body["stop"] = o.stop;
  if (o.logprobs) body["logprobs"] = true;
  if (o.top_logprobs > 0) body["top_logprobs"] = o.top_logprobs;
  return body;
}

json ChatService::Run(PreparedChat& chat, const std::function<bool()>& cancelled) {
  if (chat.decision.route == Route::kCloud) {
    Redaction redaction;
    json request = CloudRequest(chat, redaction);
    try {
      json body = cloud_->Complete(request, nullptr, nullptr);
      for (auto& choice : body["choices"]) {
        auto& content = choice["message"]["content"];
        if (content.is_string()) content = Redactor::Restore(content.get<std::string>(), redaction);
      }
      const json usage = body.value("usage", json::object());
      CountCloud(chat, "ok", usage.value("prompt_tokens", 0), usage.value("completion_tokens", 0));
      return body;
    } catch (const CloudError& e) {
      CountCloud(chat, "failed", 0, 0);
      if (e.code() == ErrorCode::kInvalidArgument || e.code() == ErrorCode::kPermissionDenied)
        throw ApiError(ErrorCode::kInternal,
                       std::string("the cloud LLM refused the request: ") + e.what());
      if (!chat.served || !chat.fits_local)
        throw ApiError(ErrorCode::kUnavailable,
                       std::string("the cloud LLM is unavailable (") + e.what() +
                           ") and the request does not fit the device's model");
      json notice = Notice(chat, e.what());
      Log(LogSeverity::kWarn, "router", "cloud_fallback",
          "chat " + chat.identity.id + ": " + notice["notice"].get<std::string>(),
          {{"completion_id", chat.identity.id}});
      chat.headers["X-Outpost-Route"] = "local";
      chat.headers["X-Outpost-Route-Reason"] = "cloud_failed_fallback";
      chat.identity.model = chat.served->config.name;
      GenerationResult result = Local(chat, chat.prompt, nullptr, cancelled);
      json body = CompletionBody(chat.identity, result, chat.request.options.logprobs);
      body["outpost"] = notice;
      return body;
    }
  }
  GenerationResult result = Local(chat, chat.prompt, nullptr, cancelled);
  return CompletionBody(chat.identity, result, chat.request.options.logprobs);
}

void ChatService::RunStream(PreparedChat& chat,
                            const std::function<bool(const std::string&)>& write) {
  bool gone = false;
  auto send = [&](const json& body) {
    if (!gone) gone = !write(SseEvent(body));
  };
  auto cancelled = [&] { return gone; };
  const bool logprobs = chat.request.options.logprobs;
  send(ChunkBody(chat.identity, {{"role", "assistant"}, {"content", ""}}, nullptr, nullptr));

  // The local answer (also the fallback, continuing `prefix` the cloud had already written).
  auto local = [&](const std::string& prefix, const json& notice) {
    std::vector<int32_t> prompt = chat.prompt;
    if (!prefix.empty())
      prompt = chat.served->chat->Tokenize(chat.served->chat->RenderPrompt(chat.request.messages) +
                                           prefix);
    GenerationResult result = Local(
        chat, prompt,
        [&](const TextChunk& chunk) {
          json lp = logprobs ? LogProbsJson(chunk.logprobs) : json(nullptr);
          send(ChunkBody(chat.identity, {{"content", chunk.text}}, nullptr, lp));
        },
        cancelled);
    if (gone || result.finish_reason == "cancelled") return;
    json last = ChunkBody(chat.identity, json::object(), result.finish_reason, nullptr);
    if (!notice.is_null()) last["outpost"] = notice;
    send(last);
    if (chat.request.include_usage)
      send(UsageChunkBody(chat.identity, result.prompt_tokens, result.completion_tokens));
    if (!gone) write("data: [DONE]\n\n");
  };

  if (chat.decision.route != Route::kCloud) return local("", nullptr);

  Redaction redaction;
  json request = CloudRequest(chat, redaction);
  StreamingRestorer restorer(redaction);
  std::string written;  // what the client has of the cloud's answer (restored)
  int prompt_tokens = 0, completion_tokens = 0;
  bool finished = false;
  try {
    cloud_->Complete(
        request,
        [&](const json& event) {
          json e = event;
          e["id"] = chat.identity.id;
          if (e.contains("usage") && e["usage"].is_object()) {
            prompt_tokens = e["usage"].value("prompt_tokens", 0);
            completion_tokens = e["usage"].value("completion_tokens", 0);
          }
          if (!e.contains("choices") || e["choices"].empty()) {
            if (chat.request.include_usage) send(e);
            return;
          }
          for (auto& choice : e["choices"]) {
            auto& delta = choice["delta"];
            if (delta.contains("content") && delta["content"].is_string()) {
              std::string text = restorer.Push(delta["content"].get<std::string>());
              if (!choice["finish_reason"].is_null()) text += restorer.Finish();
              written += text;
              delta["content"] = text;
            }
            if (!choice["finish_reason"].is_null()) finished = true;
          }
          if (!chat.request.include_usage) e.erase("usage");
          send(e);
        },
        cancelled);
    CountCloud(chat, "ok", prompt_tokens, completion_tokens);
    if (!finished && !gone) {
      std::string tail = restorer.Finish();
      if (!tail.empty()) send(ChunkBody(chat.identity, {{"content", tail}}, nullptr, nullptr));
    }
    if (!gone) write("data: [DONE]\n\n");
  } catch (const CloudError& e) {
    CountCloud(chat, "failed", prompt_tokens, completion_tokens);
    if (gone) return;
    written += restorer.Finish();
    if (chat.served && chat.fits_local) {
      json notice = Notice(chat, e.what());
      Log(LogSeverity::kWarn, "router", "cloud_fallback",
          "chat " + chat.identity.id + ": " + notice["notice"].get<std::string>(),
          {{"completion_id", chat.identity.id}});
      return local(written, notice);
    }
    json error = ErrorBody(
        ApiError(ErrorCode::kUnavailable, std::string("the cloud LLM failed (") + e.what() +
                                              ") and the request does not fit the device's model"));
    send(error);
    if (!gone) write("data: [DONE]\n\n");
  }
}

}  // namespace outpost
