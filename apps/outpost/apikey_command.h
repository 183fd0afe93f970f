// `outpost apikey create|list|revoke`: the API keys of a running agent (admin scope).
#pragma once

#include <CLI/CLI.hpp>

namespace outpost {

void AddApiKeyCommand(CLI::App& app);
// Returns the exit code, or -1 when the parsed command line is not an apikey command.
int RunApiKeyCommand(CLI::App& app);

}  // namespace outpost
