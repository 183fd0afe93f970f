// Chat completions over the models that ship a tokenizer: finds the model, renders and
// tokenizes the prompt, generates, and counts what it did.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "serving/metrics.h"
#include "serving/model_manager.h"
#include "serving/openai_protocol.h"

namespace outpost {

// A request ready to run: everything that can fail on the caller's input has been checked,
// so a stream can start with 200.
struct PreparedChat {
  ChatCompletionRequest request;
  std::shared_ptr<ServedModel> served;
  std::vector<int32_t> prompt;
  CompletionIdentity identity;
  std::map<std::string, std::string> headers;  // X-Outpost-Route and friends
};

class ChatService {
 public:
  ChatService(ModelManager& models, MetricsRegistry& metrics);

  nlohmann::json ListModels() const;
  // Throws ApiError / Error for an unknown model or a prompt that does not fit.
  PreparedChat Prepare(ChatCompletionRequest request);
  nlohmann::json Run(PreparedChat& chat);
  // Writes server-sent events; `write` returns false once the client has gone, which cancels
  // the generation.
  void RunStream(PreparedChat& chat, const std::function<bool(const std::string&)>& write);

 private:
  void Count(const PreparedChat& chat, const GenerationResult& result);
  ModelManager& models_;
  MetricsRegistry& metrics_;
};

}  // namespace outpost
