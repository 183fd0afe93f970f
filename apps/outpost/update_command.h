// `outpost update check|status`: asks a running agent about over-the-air updates.
#pragma once

#include <CLI/CLI.hpp>

namespace outpost {

void AddUpdateCommand(CLI::App& app);
// Returns the exit code, or -1 when the parsed command line is not an update command.
int RunUpdateCommand(CLI::App& app);

}  // namespace outpost
