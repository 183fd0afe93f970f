// `outpost key|pack|sign|verify|inspect|install`: model packages from the command line.
#pragma once

#include <CLI/CLI.hpp>

namespace outpost {

// Adds the package subcommands to `app`; RunPackageCommand runs whichever was chosen and
// returns the exit code (-1 when none of them was).
void AddPackageCommands(CLI::App& app);
int RunPackageCommand(CLI::App& app);

}  // namespace outpost
