// The device side of an update repository: refresh the TUF metadata, list what it offers
// that is newer than what the device has, and fetch a target (as a delta against the version
// the device already has when the repository offers one, else whole) into a local download
// directory, verified against the length and hash the targets role signed.
//
// Repository layout (what `outpost repo` writes): <url>/metadata/{N.root.json, timestamp.json,
// N.snapshot.json, N.targets.json} and <url>/targets/<sha256>.<target name>.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "update/http_fetcher.h"
#include "update/tuf.h"

namespace outpost::tuf {

struct UpdateSource {
  std::string repository_url;
  std::filesystem::path state_dir;  // metadata/ (trusted roles) and downloads/
  std::filesystem::path
      initial_root;  // shipped with the device; used once, when nothing is trusted
  HttpLimits http;
};

// One installable thing the repository offers: the newest version of a name.
struct Offer {
  std::string kind;  // "model" or "agent"
  std::string name;
  std::string version;
  std::string target;  // target path of the full package
  TargetInfo full;
  // A delta from `delta_from` (a version the device may have) to this version.
  std::optional<std::string> delta_target;
  std::optional<TargetInfo> delta;
  std::string delta_from;
  std::string delta_base_sha256;  // of the base package the delta was made against
};

struct FetchStats {
  uint64_t bytes_downloaded = 0;
  bool used_delta = false;
  std::string delta_fallback_reason;  // why a delta on offer was not used
};

class UpdateClient {
 public:
  explicit UpdateClient(UpdateSource source);

  // Refreshes the metadata (TUF client workflow) and returns the newest offer per kind and name;
  // with `wanted` (a fleet's desired state: name -> version), exactly those versions of those
  // packages (models and the agent) instead, older or newer, and nothing else. Throws as
  // Updater::Refresh does; nothing refused reaches the disk.
  std::vector<Offer> Check(Clock::time_point now,
                           const std::map<std::string, std::string>* wanted = nullptr);

  // Returns the path of the verified full package in the download directory. `base` writes the
  // package of an installed version to the given path (RebuildPackage) and returns false when
  // the device does not have that version. A partial download is kept and resumed next time.
  std::filesystem::path Fetch(
      const Offer& offer,
      const std::function<bool(const std::string& version, const std::filesystem::path& out)>& base,
      FetchStats* stats = nullptr);

  // Removes downloads no longer needed (keeps partial files of `keep_target`).
  void CleanDownloads(const std::string& keep_target = "");

  std::filesystem::path downloads() const { return source_.state_dir / "downloads"; }
  uint64_t bytes_received() const { return fetcher_.bytes_received(); }

 private:
  std::string RemotePath(const std::string& target, const TargetInfo& info) const;
  void Download(const std::string& target, const TargetInfo& info,
                const std::filesystem::path& dest);

  UpdateSource source_;
  HttpFetcher fetcher_;
  bool consistent_snapshot_ = true;
};

}  // namespace outpost::tuf
