// Packing, signing and verifying model packages (NAME-VERSION.opkg).
//
// Layout: a ustar archive whose first member is manifest.json (canonical JSON), optionally
// followed by signatures.json, then the files the manifest lists, sorted by path. Verification
// is one streaming pass: manifest, then signatures against the trust policy, then each file's
// size (from its header, before reading) and SHA-256 (while reading), nothing read twice.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "package/keys.h"
#include "package/package_manifest.h"
#include "package/tar.h"

namespace outpost {

struct PackageLimits {
  uint64_t max_file_bytes = 16ull << 30;
  uint64_t max_manifest_bytes = kMaxManifestBytes;
  uint64_t max_signatures_bytes = 64u << 10;
};

// Lists the regular files under `dir` (except the template `manifest.json`), hashes them, and
// returns the complete manifest. Throws Error(kInvalidArgument) for symlinks, special files or
// unsafe names inside `dir`.
PackageManifest ManifestForDirectory(const nlohmann::json& template_json,
                                     const std::filesystem::path& dir);

// Writes the package atomically. Same manifest and files: byte-identical output.
void WritePackage(const std::filesystem::path& out, const PackageManifest& manifest,
                  const std::filesystem::path& dir);

// Adds (or replaces) `key`'s signature over the canonical manifest; other signatures stay.
void SignPackage(const std::filesystem::path& package, const SigningKey& key);

struct SignatureCheck {
  std::string keyid;
  std::string status;  // "valid", "unknown key", "revoked", "bad signature", "duplicate"
};

struct PackageReport {
  PackageManifest manifest;
  std::vector<SignatureCheck> signatures;
  int valid_signatures = 0;
  std::string signatures_text;  // signatures.json as found ("" when unsigned)
};

// Verifies a package read through `read`. With `trust`, throws Error(kPermissionDenied) unless
// at least trust->threshold distinct trusted, unrevoked keys signed this exact manifest; without
// it (development mode, or `inspect`), signatures are reported but not required. Throws
// Error(kPermissionDenied) when a file differs from what the manifest says and
// Error(kInvalidArgument) for a malformed archive. With `extract_to` (a new, empty directory),
// files are written there as they stream; on any failure the caller removes it.
PackageReport VerifyPackage(const ReadFn& read, const TrustPolicy* trust,
                            const PackageLimits& limits = {},
                            const std::filesystem::path* extract_to = nullptr);
PackageReport VerifyPackageFile(const std::filesystem::path& path, const TrustPolicy* trust,
                                const PackageLimits& limits = {},
                                const std::filesystem::path* extract_to = nullptr);

// Where an installed version keeps what it was installed from: the canonical signed manifest
// and the signatures, so that the agent can check the files again at every load.
inline constexpr const char* kInstalledPackageDir = ".package";

// Writes `.package/manifest.json` and `.package/signatures.json` into `version_dir`.
void RecordInstalledPackage(const std::filesystem::path& version_dir,
                            const std::string& manifest_text, const std::string& signatures_text);

// Writes the package an installed version came from, byte for byte (packages are
// deterministic: the signed manifest, its signatures, then the files in manifest order), so a
// device can apply a delta against it without keeping the package. The caller checks the
// result's hash against the one it expects.
void RebuildPackage(const std::filesystem::path& version_dir, const std::filesystem::path& out);

// Installs a package into a model repository: verifies it while extracting into a staging
// directory beside the target (<repo>/<name>/.<version>.staging-<pid>), writes the repository
// manifest and the .package record, then renames the staging directory into place. A crash
// at any point leaves either no new version or a complete one; staging directories of dead
// installs are removed first. Throws Error(kFailedPrecondition) when the version exists,
// Error(kResourceExhausted) when the disk lacks room, and whatever verification throws.
PackageReport InstallPackage(const std::filesystem::path& package,
                             const std::filesystem::path& repository, const TrustPolicy* trust);

// Checks an installed version directory: signatures as VerifyPackage does, then every listed
// file on disk (no symlinks, the size and SHA-256 the manifest says). Throws Error
// (kPermissionDenied) naming the file and the failed check.
PackageReport VerifyInstalledVersion(const std::filesystem::path& version_dir,
                                     const TrustPolicy& trust);

}  // namespace outpost
