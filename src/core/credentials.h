// Secrets a program is started with (database URLs with passwords, operator tokens) come from
// a 0600 file or the environment: a command-line argument is readable by every user of the
// machine in /proc/PID/cmdline. Arguments keep working, with a warning.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace outpost {

// The first line of a file only its owner may read (Error(kFailedPrecondition) otherwise).
std::string ReadSecretFile(const std::filesystem::path& path);

// True when a connection URL carries a password ("scheme://user:password@host",
// "...?password=...").
bool UrlHasPassword(std::string_view url);

// Prints, once per option, that `option` put a secret on the command line and what to use.
void WarnSecretOnCommandLine(std::string_view option, std::string_view instead);

}  // namespace outpost
