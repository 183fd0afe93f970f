// One event schema for everything the agent says about itself: every log line, every event it
// ships through the outbox and every webhook body is the same object,
//
//   {"time", "level", "component", "event", "msg", "request_id"?, ...fields}
//
// where `component` is the part that speaks (serving, runtime, router, monitoring, health,
// update, telemetry, supervisor, agent), `event` a stable snake_case name a machine can match
// on, `msg` the sentence for a person, and the fields its evidence. A request's id follows it:
// the front end puts it in a RequestIdScope on the handling thread, and code that hands work to
// another thread carries it over explicitly.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace outpost {

enum class LogSeverity { kTrace, kDebug, kInfo, kWarn, kError };

struct LogEvent {
  LogSeverity severity = LogSeverity::kInfo;
  std::string component;
  std::string name;
  std::string message;
  nlohmann::json fields = nlohmann::json::object();

  // The schema without "time"; "request_id" comes from the current scope unless a field sets
  // it. A field named like one of the schema's keys is renamed with a trailing underscore.
  nlohmann::json ToJson() const;
};

std::string_view SeverityName(LogSeverity s);  // "trace" ... "error"

// Logs go to stdout (journald picks them up under systemd): text for people, or one JSON
// object per line when `json` is set. Throws Error(kInvalidArgument) for an unknown level name.
void InitLogging(const std::string& level, bool json);
// Changes the level of a running process; throws Error(kInvalidArgument) for an unknown name.
void SetLogLevel(const std::string& level);
std::string LogLevel();
bool LogEnabled(LogSeverity s);
// Writes out what is buffered (before the process kills itself on purpose, say).
void FlushLog();

void Log(const LogEvent& event);
inline void Log(LogSeverity s, std::string component, std::string event, std::string message,
                nlohmann::json fields = nlohmann::json::object()) {
  if (LogEnabled(s))
    Log(LogEvent{s, std::move(component), std::move(event), std::move(message), std::move(fields)});
}

// The id of the request the calling thread is working for ("" when none).
const std::string& CurrentRequestId();
// A new random id: 16 hexadecimal digits.
std::string NewRequestId();
// The client's own id when it is 1 to 64 characters of [A-Za-z0-9._:-], otherwise a new one:
// a client cannot inject text into logs through it.
std::string AcceptRequestId(std::string_view client_value);

// For front ends whose hooks begin and end a request in separate callbacks.
void SetCurrentRequestId(std::string id);

class RequestIdScope {
 public:
  explicit RequestIdScope(std::string id);
  ~RequestIdScope();
  RequestIdScope(const RequestIdScope&) = delete;
  RequestIdScope& operator=(const RequestIdScope&) = delete;

 private:
  std::string previous_;
};

}  // namespace outpost
