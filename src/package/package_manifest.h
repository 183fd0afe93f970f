// The manifest inside a package: what the package is, every file with its hash and size, the
// model's interface and serving settings, and where it came from. Signatures cover its
// canonical bytes (sorted keys, no whitespace), which is also how it is stored.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace outpost {

constexpr int kPackageFormatVersion = 1;
// A manifest larger than this is refused before it is parsed.
constexpr uint64_t kMaxManifestBytes = 1u << 20;

struct PackageFile {
  std::string path;
  std::string sha256;  // lowercase hex
  uint64_t size = 0;
};

struct PackageManifest {
  nlohmann::json json;
  std::string name;
  std::string version;
  std::string model_file;
  std::vector<PackageFile> files;  // sorted by path
  std::string Canonical() const { return json.dump(); }
};

// Checks every field. Throws Error(kInvalidArgument) naming the field; a format_version newer
// than this build's is refused with that said, never half-understood. `require_files` is
// false for the template `outpost pack` fills in.
PackageManifest ParsePackageManifest(const nlohmann::json& j, bool require_files = true);
PackageManifest ParsePackageManifestText(std::string_view text, bool require_files = true);

// True for MAJOR.MINOR.PATCH with an optional -prerelease and +build (semantic versioning).
bool IsSemanticVersion(std::string_view version);

// Throws Error(kFailedPrecondition) when the package needs a newer agent than `agent_version`.
void CheckAgentVersion(const PackageManifest& manifest, const std::string& agent_version);

// The repository manifest.json (serving's format) that a package's manifest implies.
nlohmann::json RepositoryManifest(const PackageManifest& manifest);

}  // namespace outpost
