#pragma once

#include <filesystem>
#include <string_view>

namespace outpost {

// Replaces `path` with `contents` so that a crash at any moment leaves either the old file or
// the new one: write a temporary beside it, fsync it, rename over, fsync the directory.
void WriteFileAtomically(const std::filesystem::path& path, std::string_view contents);

// Reads a whole file; throws Error(kNotFound / kInternal) with the path in the message.
std::string ReadFile(const std::filesystem::path& path);

}  // namespace outpost
