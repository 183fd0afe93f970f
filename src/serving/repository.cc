#include "serving/repository.h"

#include <algorithm>

#include "core/names.h"

namespace outpost {
namespace fs = std::filesystem;

namespace {

std::string Fingerprint(const fs::path& dir) {
  std::vector<std::string> parts;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    auto name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    auto st = e.status(ec);
    if (ec || !fs::is_regular_file(st)) continue;
    auto size = fs::file_size(e.path(), ec);
    auto mtime = fs::last_write_time(e.path(), ec).time_since_epoch().count();
    parts.push_back(name + ":" + std::to_string(size) + ":" + std::to_string(mtime));
  }
  std::sort(parts.begin(), parts.end());
  std::string fp;
  for (const auto& p : parts) fp += p + ";";
  return fp;
}

}  // namespace

RepositoryScan ScanRepository(const fs::path& root) {
  RepositoryScan scan;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    scan.problems.push_back({"", "", "model repository " + root.string() + " is not a directory"});
    return scan;
  }
  for (const auto& model_entry : fs::directory_iterator(root, ec)) {
    std::string model = model_entry.path().filename().string();
    if (model.empty() || model[0] == '.' || !model_entry.is_directory(ec)) continue;
    if (!IsValidModelName(model)) {
      scan.problems.push_back(
          {model, "", "invalid model name (allowed: letters, digits, '_', '.', '-')"});
      continue;
    }
    if (!IsPathInside(root, model_entry.path())) {
      scan.problems.push_back({model, "", "model directory resolves outside the repository"});
      continue;
    }
    bool any = false;
    for (const auto& version_entry : fs::directory_iterator(model_entry.path(), ec)) {
      std::string version = version_entry.path().filename().string();
      if (version.empty() || version[0] == '.' || !version_entry.is_directory(ec)) continue;
      any = true;
      if (!IsValidVersionLabel(version)) {
        scan.problems.push_back({model, version, "invalid version directory name"});
        continue;
      }
      if (!IsPathInside(model_entry.path(), version_entry.path())) {
        scan.problems.push_back(
            {model, version, "version directory resolves outside its model directory"});
        continue;
      }
      scan.versions.push_back(
          {model, version, version_entry.path(), Fingerprint(version_entry.path())});
    }
    if (!any) scan.problems.push_back({model, "", "no version directories"});
  }
  std::sort(scan.versions.begin(), scan.versions.end(), [](const auto& a, const auto& b) {
    return a.model != b.model ? a.model < b.model : CompareVersions(a.version, b.version) < 0;
  });
  return scan;
}

}  // namespace outpost
