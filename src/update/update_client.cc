#include "update/update_client.h"

#include <fmt/format.h>

#include <map>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/names.h"
#include "package/sha256.h"
#include "update/delta.h"
#include "update/updater.h"

namespace outpost::tuf {
namespace fs = std::filesystem;

namespace {

std::string Sha(const TargetInfo& info, const std::string& target) {
  auto it = info.hashes.find("sha256");
  if (it == info.hashes.end())
    Fail(ErrorCode::kPermissionDenied, "tuf: target '" + target + "' has no sha256");
  return it->second;
}

std::string CustomString(const TargetInfo& info, const char* key) {
  if (!info.custom.is_object() || !info.custom.contains(key) || !info.custom[key].is_string())
    return "";
  return info.custom[key].get<std::string>();
}

}  // namespace

UpdateClient::UpdateClient(UpdateSource source)
    : source_(std::move(source)), fetcher_(source_.repository_url + "/metadata", source_.http) {
  fs::create_directories(source_.state_dir / "metadata");
  fs::create_directories(downloads());
}

std::vector<Offer> UpdateClient::Check(Clock::time_point now,
                                       const std::map<std::string, std::string>* wanted) {
  Updater updater(source_.state_dir / "metadata", fetcher_);
  if (!fs::exists(source_.state_dir / "metadata" / "root.json")) {
    if (source_.initial_root.empty() || !fs::exists(source_.initial_root))
      Fail(ErrorCode::kFailedPrecondition,
           "updates: no trusted root (update_root names the root.json shipped with the device)");
    updater.Init(ReadFile(source_.initial_root));
  }
  consistent_snapshot_ = updater.Refresh(now).root().consistent_snapshot;
  std::map<std::pair<std::string, std::string>, Offer> newest;
  std::vector<std::pair<std::string, const TargetInfo*>> deltas;
  // Delegated roles too: a team's own key may publish its models (within its paths).
  const auto targets = updater.AllTargets();
  for (const auto& [target, info] : targets) {
    std::string name = CustomString(info, "name"), version = CustomString(info, "version");
    if (!IsValidModelName(name) || !IsValidVersionLabel(version)) continue;  // not ours
    if (!CustomString(info, "delta_from").empty()) {
      deltas.emplace_back(target, &info);
      continue;
    }
    std::string kind = CustomString(info, "kind");
    if (kind.empty()) kind = "model";
    if (wanted) {  // the agent too: a fleet-managed device installs nothing it was not told to
      auto w = wanted->find(name);
      if (w == wanted->end() || w->second != version) continue;
    }
    auto& o = newest[{kind, name}];
    if (o.version.empty() || CompareVersions(version, o.version) > 0) {
      o = Offer{kind, name, version, target, info, {}, {}, "", ""};
    }
  }
  for (const auto& [target, info] : deltas) {
    for (auto& [key, o] : newest) {
      if (o.name == CustomString(*info, "name") && o.version == CustomString(*info, "version") &&
          CustomString(*info, "full_target") == o.target) {
        o.delta_target = target;
        o.delta = *info;
        o.delta_from = CustomString(*info, "delta_from");
        o.delta_base_sha256 = CustomString(*info, "base_sha256");
      }
    }
  }
  std::vector<Offer> out;
  for (auto& [key, o] : newest) out.push_back(std::move(o));
  return out;
}

std::string UpdateClient::RemotePath(const std::string& target, const TargetInfo& info) const {
  fs::path p(target);
  std::string file = consistent_snapshot_ ? Sha(info, target) + "." + p.filename().string()
                                          : p.filename().string();
  return (p.parent_path() / file).generic_string();
}

void UpdateClient::Download(const std::string& target, const TargetInfo& info,
                            const fs::path& dest) {
  std::string base = source_.repository_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  Sha(info, target);  // our packages are named and cached by their sha256
  fetcher_.Download(base + "/targets/" + RemotePath(target, info), dest, info.length, info.hashes);
}

fs::path UpdateClient::Fetch(const Offer& offer,
                             const std::function<bool(const std::string&, const fs::path&)>& base,
                             FetchStats* stats) {
  FetchStats local;
  FetchStats& st = stats ? *stats : local;
  uint64_t before = fetcher_.bytes_received();
  std::string sha = Sha(offer.full, offer.target);
  fs::path full = downloads() / (sha + ".opkg");
  if (fs::exists(full) && fs::file_size(full) == offer.full.length &&
      Sha256File(full, nullptr) == sha)
    return full;  // fetched on an earlier run, then interrupted before it was installed
  if (offer.delta && !offer.delta_from.empty() && base) {
    fs::path base_file = downloads() / (sha + ".base");
    fs::path delta_file = downloads() / (Sha(*offer.delta, *offer.delta_target) + ".delta");
    try {
      if (!base(offer.delta_from, base_file)) {
        st.delta_fallback_reason = "version " + offer.delta_from + " is not installed";
      } else if (Sha256File(base_file, nullptr) != offer.delta_base_sha256) {
        st.delta_fallback_reason = "the installed " + offer.delta_from +
                                   " does not rebuild into the package the delta was made from";
      } else {
        Download(*offer.delta_target, *offer.delta, delta_file);
        ApplyDelta(base_file, delta_file, full, offer.full.length);
        uint64_t size = 0;
        if (Sha256File(full, &size) == sha && size == offer.full.length) {
          st.used_delta = true;
        } else {
          fs::remove(full);
          st.delta_fallback_reason = "the delta did not produce the signed package";
        }
      }
    } catch (const Error& e) {
      if (e.code() == ErrorCode::kUnavailable) {  // the link dropped: resume the delta next time
        std::error_code ec;
        fs::remove(base_file, ec);
        throw;
      }
      // A delta that fails its own signed hash is an attack on the delta, not a reason to stop:
      // the full package is verified on its own.
      st.delta_fallback_reason = e.what();
    }
    std::error_code ec;
    fs::remove(base_file, ec);
    fs::remove(delta_file, ec);
    if (!st.delta_fallback_reason.empty())
      Log(LogSeverity::kWarn, "update", "delta_fallback",
          fmt::format("update {} {}: fetching the whole package: {}", offer.name, offer.version,
                      st.delta_fallback_reason),
          {{"package", offer.name}, {"version", offer.version}});
  }
  if (!st.used_delta) Download(offer.target, offer.full, full);
  st.bytes_downloaded = fetcher_.bytes_received() - before;
  return full;
}

void UpdateClient::CleanDownloads(const std::string& keep_target) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(downloads(), ec)) {
    std::string n = e.path().filename().string();
    if (!keep_target.empty() && n.rfind(keep_target, 0) == 0) continue;
    fs::remove(e.path(), ec);
  }
}

}  // namespace outpost::tuf
