// Reads a model repository laid out as <root>/<model>/<version>/{model.onnx, manifest.json}.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace outpost {

struct VersionSource {
  std::string model;
  std::string version;
  std::filesystem::path dir;
  // Changes whenever a file of the version directory changes (names, sizes, modification times).
  std::string fingerprint;
};

struct RepositoryProblem {
  std::string model;
  std::string version;
  std::string reason;
};

struct RepositoryScan {
  std::vector<VersionSource> versions;
  std::vector<RepositoryProblem> problems;
};

// Never throws for the repository's contents: what cannot be served is listed in `problems`.
// Names starting with '.' are skipped, so a copy in progress can be staged beside the real one.
RepositoryScan ScanRepository(const std::filesystem::path& root);

}  // namespace outpost
