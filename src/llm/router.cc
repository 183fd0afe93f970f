#include "llm/router.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "core/atomic_file.h"
#include "core/config_schema.h"
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

namespace {

const ConfigSchema<CloudConfig>& CloudSchema() {
  using C = CloudConfig;
  using O = ConfigSchema<C>::Options;
  static const ConfigSchema<C> schema = [] {
    ConfigSchema<C> s("chat_cloud");
    s.Add("url", &C::url, "OpenAI-compatible base URL (http or https)");
    s.Add("model", &C::model, "The model the cloud is asked for");
    s.Add("api_key_secret", &C::api_key_secret, "The API key's name in the secret store");
    s.Add(
        "headers", "Extra request headers (never credentials)",
        [](const JsonFields& f, C& c) {
          const JsonFields headers = f.Object("headers");
          for (const auto& [name, value] : headers.json().items()) {
            std::string lower = AsciiLower(name);
            if (lower == "authorization" || lower == "api-key" || lower == "x-api-key")
              Fail(ErrorCode::kInvalidArgument,
                   "config: credentials do not belong in 'chat_cloud.headers': store the key "
                   "with `outpost secret set NAME` and name it in 'chat_cloud.api_key_secret'");
            c.headers.emplace_back(name, headers.Require<std::string>(name));
          }
        },
        [](const C& c) {
          json headers = json::object();
          for (const auto& [k, v] : c.headers) headers[k] = v;
          return headers;
        });
    s.Add("connect_timeout_ms", &C::connect_timeout_ms, "Connection timeout", O{.min = 1});
    s.Add("timeout_ms", &C::timeout_ms, "The whole request, streaming included", O{.min = 1});
    s.Add("first_byte_timeout_ms", &C::first_byte_timeout_ms, "Until the first byte", O{.min = 1});
    s.Add("retries", &C::retries, "Retries before any output", O{.min = 0, .max = 10});
    s.Add("backoff_ms", &C::backoff_ms, "First retry delay (doubled per retry)", O{.min = 0});
    s.Add("breaker_failures", &C::breaker_failures, "Failures in a row that open the circuit",
          O{.min = 1});
    s.Add("breaker_cooldown_secs", &C::breaker_cooldown_secs, "How long the circuit stays open",
          O{.min = 0});
    return s;
  }();
  return schema;
}

const ConfigSchema<RouterConfig>& RouterSchema() {
  using R = RouterConfig;
  using O = ConfigSchema<R>::Options;
  static const ConfigSchema<R> schema = [] {
    ConfigSchema<R> s("chat_router");
    s.Add("model_alias", &R::model_alias, "The model name that lets the router choose");
    s.Add("local_model", &R::local_model, "The local chat model for the alias");
    s.Add("difficulty_threshold", &R::difficulty_threshold, "At or above: the cloud",
          O{.min = 0, .max = 1});
    s.Add("daily_cloud_tokens", &R::daily_cloud_tokens, "Cloud tokens per day (0: no limit)");
    s.Add("default_privacy", &R::default_privacy, "standard or private",
          O{.one_of = {"standard", "private"}});
    s.Add("prefer", &R::prefer, "local or cloud, when no rule decides",
          O{.one_of = {"local", "cloud"}});
    s.Add(
        "redaction_rules", "What is redacted before a request leaves the device",
        [](const JsonFields& f, R& r) {
          const json* rules = f.Find("redaction_rules");
          if (!rules) return;
          if (!rules->is_array()) f.Fail("redaction_rules", "must be an array");
          size_t i = 0;
          for (const auto& rule : *rules) {
            const JsonFields g(rule, "config",
                               "chat_router.redaction_rules[" + std::to_string(i++) + "]");
            g.OnlyKeys({"kind", "pattern"});
            r.redaction_rules.push_back(
                {g.Require<std::string>("kind"), g.Require<std::string>("pattern")});
          }
        },
        [](const R& r) {
          json rules = json::array();
          for (const auto& rule : r.redaction_rules)
            rules.push_back({{"kind", rule.kind}, {"pattern", rule.pattern}});
          return rules;
        });
    s.Add("state_dir", &R::state_dir, "Where the day's cloud budget survives restarts");
    return s;
  }();
  return schema;
}

}  // namespace

RouterConfig ParseRouterConfig(const json& router, const json& cloud) {
  RouterConfig out;
  RouterSchema().Apply(router, out);
  RouterSchema().Check(out);
  CloudSchema().Apply(cloud, out.cloud);
  CloudSchema().Check(out.cloud);
  const auto& url = out.cloud.url;
  if (!url.empty() && url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
    Fail(ErrorCode::kInvalidArgument, "config: 'chat_cloud.url' must be an http(s) URL");
  Redactor check(out.redaction_rules);  // a bad pattern is a config error now, not per request
  return out;
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
