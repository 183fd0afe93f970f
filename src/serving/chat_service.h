// Chat completions: the router picks the device's model or the cloud LLM for each request
// (router.h says why), the local path generates with the ONNX decoder, the cloud path sends a
// redacted conversation and restores the answer, and a failed cloud falls back to the device
// with a notice when the request fits there.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "llm/cloud_client.h"
#include "llm/redaction.h"
#include "llm/router.h"
#include "serving/metrics.h"
#include "serving/model_manager.h"
#include "serving/openai_protocol.h"

namespace outpost {

// What the caller's credential allows of the cloud LLM: the cloud scope, and the key's own
// daily token budget (unset: none of its own).
struct CloudPermit {
  bool allowed = true;
  std::function<bool()> has_room;
  std::function<void(uint64_t tokens)> spend;
};

// A request ready to run: everything that can fail on the caller's input has been checked,
// so a stream can start with 200.
struct PreparedChat {
  ChatCompletionRequest request;
  std::shared_ptr<ServedModel> served;  // the local model; null when there is none
  std::vector<int32_t> prompt;          // under the local tokenizer
  bool fits_local = false;
  RouteDecision decision;
  CompletionIdentity identity;
  std::map<std::string, std::string> headers;  // X-Outpost-Route and friends
  CloudPermit permit;
};

class ChatService {
 public:
  // `api_key` is the cloud's credential from the secret store ("" when none).
  ChatService(ModelManager& models, MetricsRegistry& metrics, RouterConfig router = {},
              std::string api_key = "");

  nlohmann::json ListModels() const;
  // While `reason` returns non-empty, requests are refused (503): load shedding.
  void SetShedding(std::function<std::string()> reason) { shed_reason_ = std::move(reason); }
  // The cloud link's circuit, for health: "" when no cloud is configured.
  std::string CloudLinkState() const;
  // `privacy_header` is X-Outpost-Privacy ("" when absent). Throws ApiError / Error for an
  // unknown model, a prompt that fits nowhere, or a private request that cannot stay local.
  PreparedChat Prepare(ChatCompletionRequest request, const std::string& privacy_header = "",
                       CloudPermit permit = {});
  // Non-streaming; may change chat.headers (a fallback says so). `cancelled` (may be null) is
  // polled during local generation.
  nlohmann::json Run(PreparedChat& chat, const std::function<bool()>& cancelled = nullptr);
  // Writes server-sent events; `write` returns false once the client has gone, which cancels
  // the generation.
  void RunStream(PreparedChat& chat, const std::function<bool(const std::string&)>& write);

 private:
  struct CloudCall;
  std::shared_ptr<ServedModel> LocalModelFor(const std::string& name) const;
  GenerationResult Local(PreparedChat& chat, const std::vector<int32_t>& prompt,
                         const std::function<void(const TextChunk&)>& on_chunk,
                         const std::function<bool()>& cancelled);
  nlohmann::json CloudRequest(const PreparedChat& chat, Redaction& redaction) const;
  void CountLocal(const PreparedChat& chat, const GenerationResult& result);
  void CountCloud(const PreparedChat& chat, const std::string& outcome, int prompt_tokens,
                  int completion_tokens);
  nlohmann::json Notice(const PreparedChat& chat, const std::string& why) const;

  ModelManager& models_;
  MetricsRegistry& metrics_;
  RouterConfig router_;
  Redactor redactor_;
  std::unique_ptr<CloudClient> cloud_;
  std::unique_ptr<CloudBudget> budget_;
  std::function<std::string()> shed_reason_;
};

}  // namespace outpost
