// `outpost infer MODEL --input NAME=FILE.npy|FILE.json`: one request to a running agent.
#pragma once

#include <CLI/CLI.hpp>

namespace outpost {

void AddInferCommand(CLI::App& app);
int RunInferCommand(CLI::App& app);  // -1 when `infer` was not chosen

}  // namespace outpost
