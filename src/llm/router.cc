#include "llm/router.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_fields.h"
#include "core/logging.h"
#include "core/names.h"

namespace outpost {
namespace {

using json = nlohmann::json;

size_t Count(std::string_view text, std::string_view needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string_view::npos;
       at = text.find(needle, at + needle.size()))
    ++n;
  return n;
}

std::string Today() { return FormatLocalNow("%Y-%m-%d"); }

}  // namespace

RouterConfig ParseRouterConfig(const json& router, const json& cloud) {
  RouterConfig out;
  const JsonFields r(router, "config", "chat_router");
  const JsonFields c(cloud, "config", "chat_cloud");
  r.OnlyKeys({"model_alias", "local_model", "difficulty_threshold", "daily_cloud_tokens",
              "default_privacy", "prefer", "redaction_rules", "state_dir"});
  c.OnlyKeys({"url", "model", "api_key_secret", "headers", "connect_timeout_ms", "timeout_ms",
              "first_byte_timeout_ms", "retries", "backoff_ms", "breaker_failures",
              "breaker_cooldown_secs"});
  out.model_alias = r.Get("model_alias", out.model_alias);
  out.local_model = r.Get("local_model", out.local_model);
  out.difficulty_threshold = r.Get("difficulty_threshold", out.difficulty_threshold);
  out.daily_cloud_tokens = r.Get("daily_cloud_tokens", out.daily_cloud_tokens);
  out.default_privacy = r.Get("default_privacy", out.default_privacy);
  out.prefer = r.Get("prefer", out.prefer);
  out.state_dir = r.Get("state_dir", out.state_dir.string());
  if (const json* rules = r.Find("redaction_rules")) {
    if (!rules->is_array()) r.Fail("redaction_rules", "must be an array");
    size_t i = 0;
    for (const auto& rule : *rules) {
      const JsonFields f(rule, "config",
                         "chat_router.redaction_rules[" + std::to_string(i++) + "]");
      f.OnlyKeys({"kind", "pattern"});
      out.redaction_rules.push_back(
          {f.Require<std::string>("kind"), f.Require<std::string>("pattern")});
    }
  }
  if (out.default_privacy != "standard" && out.default_privacy != "private")
    r.Fail("default_privacy", "must be \"standard\" or \"private\"");
  if (out.prefer != "local" && out.prefer != "cloud")
    r.Fail("prefer", "must be \"local\" or \"cloud\"");
  auto& k = out.cloud;
  k.url = c.Get("url", k.url);
  k.model = c.Get("model", k.model);
  k.api_key_secret = c.Get("api_key_secret", k.api_key_secret);
  const JsonFields headers = c.Object("headers");
  for (const auto& [name, value] : headers.json().items()) {
    std::string lower = AsciiLower(name);
    if (lower == "authorization" || lower == "api-key" || lower == "x-api-key")
      Fail(ErrorCode::kInvalidArgument,
           "config: credentials do not belong in 'chat_cloud.headers': store the key with "
           "`outpost secret set NAME` and name it in 'chat_cloud.api_key_secret'");
    k.headers.emplace_back(name, headers.Require<std::string>(name));
  }
  k.connect_timeout_ms = c.Get("connect_timeout_ms", k.connect_timeout_ms);
  k.timeout_ms = c.Get("timeout_ms", k.timeout_ms);
  k.first_byte_timeout_ms = c.Get("first_byte_timeout_ms", k.first_byte_timeout_ms);
  k.retries = c.Get("retries", k.retries);
  k.backoff_ms = c.Get("backoff_ms", k.backoff_ms);
  k.breaker_failures = c.Get("breaker_failures", k.breaker_failures);
  k.breaker_cooldown_secs = c.Get("breaker_cooldown_secs", k.breaker_cooldown_secs);
  if (!k.url.empty() && k.url.rfind("http://", 0) != 0 && k.url.rfind("https://", 0) != 0)
    c.Fail("url", "must be an http(s) URL");
  if (k.retries < 0 || k.breaker_failures < 1 || k.timeout_ms < 1 || k.connect_timeout_ms < 1)
    Fail(ErrorCode::kInvalidArgument, "config: 'chat_cloud' timeouts and counts must be positive");
  Redactor check(out.redaction_rules);  // a bad pattern is a config error now, not per request
  return out;
}

json ToJson(const RouterConfig& c) {
  json rules = json::array();
  for (const auto& r : c.redaction_rules)
    rules.push_back({{"kind", r.kind}, {"pattern", r.pattern}});
  json headers = json::object();
  for (const auto& [k, v] : c.cloud.headers) headers[k] = v;
  return {{"chat_router",
           {{"model_alias", c.model_alias},
            {"local_model", c.local_model},
            {"difficulty_threshold", c.difficulty_threshold},
            {"daily_cloud_tokens", c.daily_cloud_tokens},
            {"default_privacy", c.default_privacy},
            {"prefer", c.prefer},
            {"redaction_rules", rules},
            {"state_dir", c.state_dir.string()}}},
          {"chat_cloud",
           {{"url", c.cloud.url},
            {"model", c.cloud.model},
            {"api_key_secret", c.cloud.api_key_secret},
            {"headers", headers},
            {"connect_timeout_ms", c.cloud.connect_timeout_ms},
            {"timeout_ms", c.cloud.timeout_ms},
            {"first_byte_timeout_ms", c.cloud.first_byte_timeout_ms},
            {"retries", c.cloud.retries},
            {"backoff_ms", c.cloud.backoff_ms},
            {"breaker_failures", c.cloud.breaker_failures},
            {"breaker_cooldown_secs", c.cloud.breaker_cooldown_secs}}}};
}

Difficulty EstimateDifficulty(const std::vector<ChatMessage>& messages, int prompt_tokens) {
  Difficulty d;
  std::string last;  // the latest user turn says most about what is asked now
  for (auto it = messages.rbegin(); it != messages.rend(); ++it)
    if (it->role == "user") {
      last = AsciiLower(it->content);
      break;
    }
  auto fire = [&](const char* signal, double weight) {
    d.score += weight;
    d.signals.emplace_back(signal);
  };
  if (prompt_tokens > 1500)
    fire("long", 0.35);
  else if (prompt_tokens > 400)
    fire("medium_length", 0.15);
  static const char* kCode[] = {"```",         "def ",      "class ",  "#include",
                                "function ",   "=>",        "};",      "select ",
                                "stack trace", "traceback", "compile", "refactor"};
  int code = 0;
  for (const char* k : kCode) code += Count(last, k) > 0;
  if (code >= 2)
    fire("code", 0.35);
  else if (code == 1)
    fire("code_hint", 0.15);
  static const char* kMaths[] = {"prove",  "integral",    "derivative", "equation",  "theorem",
                                 "matrix", "probability", "\\frac",     "solve for", "∑",
                                 "∫"};
  int maths = 0;
  for (const char* k : kMaths) maths += Count(last, k) > 0;
  size_t operators = 0;
  for (char ch : last) operators += ch == '=' || ch == '^' || ch == '*' || ch == '/';
  if (maths >= 1 || operators >= 6) fire("maths", 0.3);
  static const char* kSteps[] = {"step by step", "first,",      "then ",         "finally",
                                 "compare",      "analyze",     "analyse",       "plan ",
                                 "design ",      "explain why", "pros and cons", "trade-off"};
  int steps = 0;
  for (const char* k : kSteps) steps += Count(last, k) > 0;
  size_t numbered = Count(last, "\n1.") + Count(last, "\n2.") + Count(last, "\n3.");
  if (steps >= 2 || numbered >= 2)
    fire("multi_step", 0.3);
  else if (steps == 1)
    fire("instruction_hint", 0.1);
  if (Count(last, "?") >= 3) fire("several_questions", 0.15);
  d.score = std::min(1.0, d.score);
  return d;
}

std::string_view RouteName(Route r) {
  switch (r) {
    case Route::kLocal:
      return "local";
    case Route::kCloud:
      return "cloud";
    case Route::kRefuse:
      return "refuse";
  }
  return "?";
}

RouteDecision DecideRoute(const RouterConfig& config, const RouteInputs& in) {
  const bool fits_local =
      in.has_local && in.prompt_tokens < in.local_context &&
      (in.max_tokens == 0 || in.prompt_tokens + in.max_tokens <= in.local_context);
  const bool cloud_usable = in.cloud_configured && in.cloud_allowed && in.budget_left &&
                            in.caller_may_use_cloud && in.caller_budget_left;
  // Why the cloud cannot take it, when it cannot.
  auto no_cloud = [&]() -> std::string {
    if (!in.cloud_configured) return "cloud_not_configured";
    if (!in.caller_may_use_cloud) return "cloud_not_permitted";
    if (!in.caller_budget_left) return "key_budget_exhausted";
    if (!in.cloud_allowed) return "cloud_unavailable";
    return "cloud_budget_exhausted";
  };
  auto local_or_refuse = [&](const std::string& why) -> RouteDecision {
    if (fits_local) return {Route::kLocal, why};
    return {Route::kRefuse, why};
  };

  if (in.private_request) return local_or_refuse("private");
  if (in.forced == "local") return local_or_refuse("forced_local");
  if (in.forced == "cloud") {
    if (cloud_usable) return {Route::kCloud, "forced_cloud"};
    return local_or_refuse(no_cloud());
  }
  if (!in.has_local) {
    if (cloud_usable) return {Route::kCloud, "no_local_model"};
    return {Route::kRefuse, no_cloud()};
  }
  if (in.prompt_tokens >= in.local_context) {
    if (cloud_usable) return {Route::kCloud, "context_exceeds_local"};
    return {Route::kRefuse, no_cloud()};
  }
  if (in.max_tokens > 0 && in.prompt_tokens + in.max_tokens > in.local_context) {
    if (cloud_usable) return {Route::kCloud, "max_tokens_exceeds_local"};
    return {Route::kRefuse, no_cloud()};
  }
  if (in.difficulty >= config.difficulty_threshold) {
    if (cloud_usable) return {Route::kCloud, "difficult"};
    return {Route::kLocal, no_cloud()};
  }
  if (config.prefer == "cloud" && cloud_usable) return {Route::kCloud, "preferred_cloud"};
  return {Route::kLocal, "routine"};
}

CloudBudget::CloudBudget(std::filesystem::path state_dir, uint64_t daily_limit)
    : limit_(daily_limit) {
  if (state_dir.empty()) return;
  file_ = state_dir / "cloud_budget.json";
  try {
    if (std::filesystem::exists(file_)) {
      json j = json::parse(ReadFile(file_));
      day_ = j.value("day", "");
      spent_ = j.value("tokens", uint64_t{0});
    }
  } catch (const std::exception& e) {
    // A damaged record must not unlock more spending than allowed: count the day as spent.
    Log(LogSeverity::kWarn, "router", "budget_unreadable",
        fmt::format("cloud budget record {} unreadable ({}); today's budget counts as spent",
                    file_.string(), e.what()));
    day_ = Today();
    spent_ = limit_;
  }
}

void CloudBudget::Roll() {
  std::string today = Today();
  if (today != day_) {
    day_ = today;
    spent_ = 0;
  }
}

bool CloudBudget::HasRoom() {
  std::lock_guard lock(mu_);
  Roll();
  return limit_ == 0 || spent_ < limit_;
}

void CloudBudget::Spend(uint64_t tokens) {
  std::lock_guard lock(mu_);
  Roll();
  spent_ += tokens;
  if (file_.empty()) return;
  try {
    std::filesystem::create_directories(file_.parent_path());
    WriteFileAtomically(file_, json{{"day", day_}, {"tokens", spent_}}.dump());
  } catch (const std::exception& e) {
    Log(LogSeverity::kWarn, "router", "budget_not_recorded",
        fmt::format("cannot record the cloud budget in {}: {}", file_.string(), e.what()));
  }
}

uint64_t CloudBudget::SpentToday() {
  std::lock_guard lock(mu_);
  Roll();
  return spent_;
}

}  // namespace outpost
