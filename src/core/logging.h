#pragma once

#include <string>

namespace outpost {

// Logs go to stdout (journald picks them up under systemd): plain text, or one JSON object per
// line when `json` is set. Throws Error(kInvalidArgument) for an unknown level name.
void InitLogging(const std::string& level, bool json);
// Changes the level of a running process; throws Error(kInvalidArgument) for an unknown name.
void SetLogLevel(const std::string& level);
std::string LogLevel();

}  // namespace outpost
