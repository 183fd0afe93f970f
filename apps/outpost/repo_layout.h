// The metadata directory of a repository `outpost repo` keeps: versioned files N.<role>.json
// (consistent snapshots), read the same way by `outpost repo` and `outpost fleet publish`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace outpost {

// Each role with a versioned file here, and its versions, ascending.
std::map<std::string, std::vector<int64_t>> MetadataVersions(const std::filesystem::path& meta);

// The newest version of `role` here (0: none).
int64_t LatestVersion(const std::filesystem::path& meta, const std::string& role);

bool IsTopLevelRole(const std::string& role);

}  // namespace outpost
