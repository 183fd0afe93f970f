// `outpost tokenize`: runs a model's tokenizer.json on text, the way the agent does.
#pragma once

#include <CLI/CLI.hpp>

namespace outpost {

void AddTokenizeCommand(CLI::App& app);
// Returns the exit code, or -1 when the parsed command line is not this command.
int RunTokenizeCommand(CLI::App& app);

}  // namespace outpost
