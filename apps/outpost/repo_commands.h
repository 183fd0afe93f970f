// `outpost repo init|add|publish`: an update repository (TUF metadata and targets) in a
// directory any static HTTP server can serve; and `outpost tuf`: the client, with the command
// line of the TUF conformance suite (init / refresh / download).
#pragma once

#include <CLI/CLI.hpp>

namespace outpost {

void AddRepoCommands(CLI::App& app);
int RunRepoCommand(CLI::App& app);  // -1 when none of these was chosen

}  // namespace outpost
