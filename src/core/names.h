#pragma once

#include <ctime>
#include <filesystem>
#include <string>
#include <string_view>

namespace outpost {

// Model names and version labels come from directory names and from requests; both end up in
// paths, URLs and metric labels, so they are restricted to a safe alphabet:
// [A-Za-z0-9] first, then [A-Za-z0-9_.-], at most 128 characters, never "." or "..".
bool IsValidModelName(std::string_view name);
bool IsValidVersionLabel(std::string_view version);

// Orders version labels: numerically when both are unsigned integers, else by dot-separated
// components (numbers numerically, the rest as text), so "10" > "9" and "1.10.0" > "1.9.3".
int CompareVersions(std::string_view a, std::string_view b);

// True when `path`, once symlinks are resolved, lies inside `root` (also resolved).
bool IsPathInside(const std::filesystem::path& root, const std::filesystem::path& path);

// `s` with ASCII letters in lower case (header names, host names, media types).
std::string AsciiLower(std::string_view s);

// The local date (or time) now, in a strftime format.
std::string FormatLocalNow(const char* format);
// A UTC time as RFC 3339 ("2026-12-01T03:04:05Z").
std::string FormatUtc(std::time_t t);

}  // namespace outpost
