// `outpost secret set|list|rm|check`: the device's encrypted credential store.
#pragma once

#include <CLI/CLI.hpp>

namespace outpost {

void AddSecretCommand(CLI::App& app);
// Returns the exit code, or -1 when the parsed command line is not a secret command.
int RunSecretCommand(CLI::App& app);

}  // namespace outpost
