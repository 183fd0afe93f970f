// A client for any OpenAI-compatible chat completions endpoint (libcurl): timeouts, retries
// with backoff on 429/5xx/connection failures before any output, a circuit breaker, and
// streaming passed through event by event.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "llm/circuit_breaker.h"
#include "llm/router.h"

namespace outpost {

// The cloud could not answer. `partial` is true when part of a stream had already been
// passed on (nothing can be retried then).
struct CloudError : Error {
  CloudError(ErrorCode code, const std::string& message, int http_status, bool partial_output)
      : Error(code, message), status(http_status), partial(partial_output) {}
  int status;  // 0: no HTTP answer (connection, timeout)
  bool partial;
};

class CloudClient {
 public:
  // `api_key` is held in memory only, sent as a bearer token, never logged.
  CloudClient(CloudConfig config, std::string api_key);

  // Sends `request` (an OpenAI chat completions body; "model" is replaced by the configured
  // one). Non-streaming: returns the response body. Streaming: calls `on_event` with each
  // event's JSON and returns null. `cancelled` is polled while waiting.
  nlohmann::json Complete(nlohmann::json request,
                          const std::function<void(const nlohmann::json&)>& on_event,
                          const std::function<bool()>& cancelled);

  CircuitBreaker& breaker() { return breaker_; }
  const CloudConfig& config() const { return config_; }

 private:
  CloudConfig config_;
  std::string api_key_;
  CircuitBreaker breaker_;
};

}  // namespace outpost
