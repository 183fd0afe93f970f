// `outpost bench MODEL...`: every backend and execution provider that can run a model on this
// device, side by side (latency, throughput, memory, load time, agreement of outputs).
#pragma once

#include <CLI/CLI.hpp>

namespace outpost {

void AddBenchCommand(CLI::App& app);
int RunBenchCommand(CLI::App& app);  // -1 when `bench` was not chosen

}  // namespace outpost
