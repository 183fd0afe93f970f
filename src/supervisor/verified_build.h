// The build a supervisor runs is the build it verified. A slot can be written by whoever
// installs into it (root, or the supervisor's user), so between a check of the slot and an exec
// by path a file could change, and anything planted beside the signed files (a library
// the loader finds through $ORIGIN/../lib before the system's) would be loaded. Instead, each
// start copies exactly the files the signed manifest lists into a fresh private directory,
// hashing the bytes as they are written there, makes the copy read-only, and executes the
// entry point through the descriptor it opened (fexecve): what runs is what was hashed, and
// nothing the manifest does not list is there to be loaded.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "package/package_manifest.h"

namespace outpost {

class VerifiedBuild {
 public:
  // Copies the manifest's files from `version_dir` into a new directory under `run_root`
  // (0711, created when missing). Throws Error(kPermissionDenied) when a file differs from the
  // manifest, Error(kInternal) when the copy cannot be made.
  VerifiedBuild(const std::filesystem::path& version_dir, const PackageManifest& manifest,
                const std::filesystem::path& run_root);
  ~VerifiedBuild();  // removes the copy
  VerifiedBuild(const VerifiedBuild&) = delete;
  VerifiedBuild& operator=(const VerifiedBuild&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  const std::filesystem::path& entry() const { return entry_; }  // inside dir()
  int entry_fd() const { return entry_fd_; }                     // read-only, close-on-exec
  bool entry_is_script() const { return script_; }

 private:
  void Remove();
  std::filesystem::path dir_;
  std::filesystem::path entry_;
  int entry_fd_ = -1;
  bool script_ = false;
};

// Removes copies a previous supervisor left (it was killed before it could).
void RemoveStaleBuilds(const std::filesystem::path& run_root);

}  // namespace outpost
