#include "repo_layout.h"

#include <algorithm>
#include <cctype>

namespace outpost {

std::map<std::string, std::vector<int64_t>> MetadataVersions(const std::filesystem::path& meta) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& e : std::filesystem::directory_iterator(meta)) {
    const std::string n = e.path().filename().string();
    const size_t dot = n.find('.');
    if (dot == std::string::npos || dot == 0 || dot > 18 || n.size() < dot + 7 ||
        n.compare(n.size() - 5, 5, ".json") != 0 ||
        !std::all_of(n.begin(), n.begin() + static_cast<std::ptrdiff_t>(dot),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }))
      continue;
    out[n.substr(dot + 1, n.size() - dot - 6)].push_back(std::stoll(n.substr(0, dot)));
  }
  for (auto& [role, versions] : out) std::sort(versions.begin(), versions.end());
  return out;
}

int64_t LatestVersion(const std::filesystem::path& meta, const std::string& role) {
  auto all = MetadataVersions(meta);
  auto it = all.find(role);
  return it == all.end() ? 0 : it->second.back();
}

bool IsTopLevelRole(const std::string& role) {
  return role == "root" || role == "targets" || role == "snapshot" || role == "timestamp";
}

}  // namespace outpost
