// Where a chat request is answered: on the device or by the cloud LLM, and why. The policy
// is pure (inputs in, decision out) so every reason can be tested; the budget is persisted.
#pragma once

#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm/chat_template.h"
#include "llm/redaction.h"

namespace outpost {

struct CloudConfig {
  std::string url;             // OpenAI-compatible base URL, e.g. https://api.openai.com/v1
  std::string model;           // the model the cloud is asked for
  std::string api_key_secret;  // name in the device's secret store ("" : no key sent)
  std::vector<std::pair<std::string, std::string>> headers;
  int connect_timeout_ms = 3000;
  int timeout_ms = 60000;  // the whole request, streaming included
  int first_byte_timeout_ms = 15000;
  int retries = 2;                    // on 429, 5xx and connection failures, before any output
  int backoff_ms = 250;               // doubled per retry, capped at 4 s; Retry-After wins
  int breaker_failures = 3;           // consecutive failures that open the circuit
  double breaker_cooldown_secs = 30;  // open this long, then one trial request (half-open)
};

struct RouterConfig {
  std::string model_alias = "outpost";       // a request naming this lets the router choose
  std::string local_model;                   // for the alias; "": the only (or first) chat model
  double difficulty_threshold = 0.6;         // at or above: the cloud, when it may be used
  uint64_t daily_cloud_tokens = 0;           // prompt + completion tokens per day; 0: no limit
  std::string default_privacy = "standard";  // or "private": nothing leaves unless marked
  std::string prefer = "local";              // "local" or "cloud" when neither rule decides
  std::vector<RedactionRule> redaction_rules;
  std::filesystem::path state_dir;  // the day's budget survives restarts here
  CloudConfig cloud;
  bool cloud_enabled() const { return !cloud.url.empty() && !cloud.model.empty(); }
};

// Throws Error(kInvalidArgument) naming the key at fault.
RouterConfig ParseRouterConfig(const nlohmann::json& chat_router, const nlohmann::json& chat_cloud);

// 0 (routine) .. 1 (hard) from cheap features of the conversation: length, code, maths,
// multi-step instructions, several questions.
struct Difficulty {
  double score = 0;
  std::vector<std::string> signals;  // which features fired, for the log
};
Difficulty EstimateDifficulty(const std::vector<ChatMessage>& messages, int prompt_tokens);

enum class Route { kLocal, kCloud, kRefuse };

struct RouteInputs {
  bool private_request = false;
  std::string forced;      // "local", "cloud" or "" (metadata.route)
  bool has_local = false;  // a local chat model exists for the request
  int prompt_tokens = 0;   // under the local tokenizer
  int local_context = 0;
  int max_tokens = 0;  // 0: unspecified
  double difficulty = 0;
  bool cloud_configured = false;
  bool cloud_allowed = false;  // circuit not open
  bool budget_left = true;
  bool caller_may_use_cloud = true;  // the caller's credential has the cloud scope
  bool caller_budget_left = true;    // the caller's own daily cloud tokens (per API key)
};

struct RouteDecision {
  Route route = Route::kLocal;
  std::string reason;  // a short label: metric value, header, log field
};

RouteDecision DecideRoute(const RouterConfig& config, const RouteInputs& in);
std::string_view RouteName(Route r);

// Cloud tokens spent today (local calendar day), kept in <state_dir>/cloud_budget.json.
class CloudBudget {
 public:
  CloudBudget(std::filesystem::path state_dir, uint64_t daily_limit);
  bool HasRoom();
  void Spend(uint64_t tokens);
  uint64_t SpentToday();

 private:
  void Roll();  // under mu_: a new day starts at zero
  std::mutex mu_;
  std::filesystem::path file_;
  uint64_t limit_;
  std::string day_;
  uint64_t spent_ = 0;
};

}  // namespace outpost
