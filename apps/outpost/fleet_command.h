// `outpost fleet ...`: the operator's command line for a fleet server (devices, enrollment
// tokens, deployments, rollouts, events, the audit log, which it verifies itself).
#pragma once

#include <CLI/CLI.hpp>

namespace outpost {

void AddFleetCommand(CLI::App& app);
int RunFleetCommand(CLI::App& app);  // -1 when not chosen

}  // namespace outpost
