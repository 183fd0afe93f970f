#include "core/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <random>

#include "core/error.h"

namespace outpost {
namespace {

using json = nlohmann::json;

std::atomic<bool> g_json{false};
thread_local std::string t_request_id;

spdlog::level::level_enum SpdLevel(LogSeverity s) {
  switch (s) {
    case LogSeverity::kTrace:
      return spdlog::level::trace;
    case LogSeverity::kDebug:
      return spdlog::level::debug;
    case LogSeverity::kInfo:
      return spdlog::level::info;
    case LogSeverity::kWarn:
      return spdlog::level::warn;
    case LogSeverity::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

bool Reserved(const std::string& key) {
  return key == "time" || key == "level" || key == "component" || key == "event" || key == "msg" ||
         key == "request_id";
}

spdlog::level::level_enum ParseLevel(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    Fail(ErrorCode::kInvalidArgument,
         "unknown log level '" + level + "' (trace, debug, info, warn, error, off)");
  }
  return parsed;
}

}  // namespace

std::string_view SeverityName(LogSeverity s) {
  switch (s) {
    case LogSeverity::kTrace:
      return "trace";
    case LogSeverity::kDebug:
      return "debug";
    case LogSeverity::kInfo:
      return "info";
    case LogSeverity::kWarn:
      return "warn";
    case LogSeverity::kError:
      return "error";
  }
  return "info";
}

json LogEvent::ToJson() const {
  json out = {{"level", SeverityName(severity)},
              {"component", component},
              {"event", name},
              {"msg", message}};
  if (!t_request_id.empty()) out["request_id"] = t_request_id;
  if (fields.is_object()) {
    for (const auto& [key, value] : fields.items()) {
      if (key == "request_id") {
        out[key] = value;
      } else {
        out[Reserved(key) ? key + "_" : key] = value;
      }
    }
  }
  return out;
}

void SetLogLevel(const std::string& level) {
  spdlog::default_logger()->set_level(ParseLevel(level));
}

std::string LogLevel() {
  auto name = spdlog::level::to_string_view(spdlog::default_logger()->level());
  return std::string(name.data(), name.size());
}

bool LogEnabled(LogSeverity s) { return spdlog::default_logger_raw()->should_log(SpdLevel(s)); }

void FlushLog() { spdlog::default_logger_raw()->flush(); }

void Log(const LogEvent& event) {
  auto* logger = spdlog::default_logger_raw();
  const auto level = SpdLevel(event.severity);
  if (!logger->should_log(level)) return;
  if (g_json.load(std::memory_order_relaxed)) {
    // The formatter writes {"time":"...", and this the rest of the object.
    std::string body = event.ToJson().dump(-1, ' ', false, json::error_handler_t::replace);
    logger->log(level, "{}", std::string_view(body).substr(1));
    return;
  }
  std::string line = "[" + event.component + "] " + event.message;
  const std::string& id =
      event.fields.contains("request_id") && event.fields["request_id"].is_string()
          ? event.fields["request_id"].get_ref<const std::string&>()
          : t_request_id;
  if (!id.empty()) line += " (request " + id + ")";
  logger->log(level, "{}", line);
}

void InitLogging(const std::string& level, bool json_lines) {
  auto parsed = ParseLevel(level);
  auto logger = spdlog::stdout_logger_mt("outpost");
  if (json_lines) {
    logger->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ",%v)", spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
  }
  g_json = json_lines;
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

const std::string& CurrentRequestId() { return t_request_id; }

void SetCurrentRequestId(std::string id) { t_request_id = std::move(id); }

std::string NewRequestId() {
  // A counter from a random start, mixed by SplitMix64's finalizer: unique within the process
  // and unguessable enough for correlation, without a generator per thread (gRPC starts
  // threads as load comes, and seeding one per thread showed in profiles).
  static std::atomic<uint64_t> counter{std::random_device{}() * 0x9e3779b97f4a7c15ull};
  uint64_t v = counter.fetch_add(0x9e3779b97f4a7c15ull, std::memory_order_relaxed);
  v = (v ^ (v >> 30)) * 0xbf58476d1ce4e5b9ull;
  v = (v ^ (v >> 27)) * 0x94d049bb133111ebull;
  v ^= v >> 31;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) id[static_cast<size_t>(i)] = kHex[v & 15];
  return id;
}

std::string AcceptRequestId(std::string_view value) {
  if (value.empty() || value.size() > 64) return NewRequestId();
  for (char c : value) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return NewRequestId();
  }
  return std::string(value);
}

RequestIdScope::RequestIdScope(std::string id) : previous_(std::move(t_request_id)) {
  t_request_id = std::move(id);
}

RequestIdScope::~RequestIdScope() { t_request_id = std::move(previous_); }

}  // namespace outpost
