#pragma once

#include <filesystem>
#include <string_view>

namespace outpost {

// Replaces `path` with `contents` so that a crash at any moment leaves either the old file or
// the new one: write a temporary beside it, fsync it, rename over, fsync the directory. The
// temporary is created 0600 and given `mode` before the rename, so a secret written with 0600
// is never readable by others, not even for a moment.
void WriteFileAtomically(const std::filesystem::path& path, std::string_view contents,
                         unsigned mode = 0644);

// Throws Error(kFailedPrecondition) when `path` exists and its group or others may read or
// write it: what holds a secret must be 0600 (or stricter).
void RequirePrivateFile(const std::filesystem::path& path);

// Reads a whole file; throws Error(kNotFound / kInternal) with the path in the message.
std::string ReadFile(const std::filesystem::path& path);

}  // namespace outpost
