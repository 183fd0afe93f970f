#include "fleet/desired_state.h"

#include <algorithm>

#include "core/error.h"
#include "core/names.h"
#include "fleet/rollout.h"
#include "package/sha256.h"

namespace outpost::fleet {

using json = nlohmann::json;

namespace {

bool IsValidTagKey(const std::string& k) {
  if (k.empty() || k.size() > 64) return false;
  return std::all_of(k.begin(), k.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
           c == '/';
  });
}

void CheckTagValue(const std::string& key, const json& v) {
  if (!v.is_string() || v.get_ref<const std::string&>().size() > 256)
    Fail(ErrorCode::kInvalidArgument, "tag '" + key + "' must be a string of at most 256 bytes");
}

}  // namespace

bool Selector::Matches(const Tags& tags) const {
  for (const auto& [key, values] : any_of) {
    auto it = tags.find(key);
    if (it == tags.end() || std::find(values.begin(), values.end(), it->second) == values.end())
      return false;
  }
  return true;
}

json Selector::ToJson() const {
  json j = json::object();
  for (const auto& [k, v] : any_of) j[k] = v.size() == 1 ? json(v[0]) : json(v);
  return j;
}

Selector Selector::Parse(const json& j) {
  if (!j.is_object()) Fail(ErrorCode::kInvalidArgument, "selector must be an object of tags");
  Selector s;
  for (const auto& [k, v] : j.items()) {
    if (!IsValidTagKey(k)) Fail(ErrorCode::kInvalidArgument, "selector: bad tag name '" + k + "'");
    if (v.is_array()) {
      if (v.empty()) Fail(ErrorCode::kInvalidArgument, "selector: '" + k + "' lists no values");
      for (const auto& one : v) {
        CheckTagValue(k, one);
        s.any_of[k].push_back(one.get<std::string>());
      }
    } else {
      CheckTagValue(k, v);
      s.any_of[k].push_back(v.get<std::string>());
    }
  }
  return s;
}

Tags ParseTags(const json& j) {
  if (!j.is_object()) Fail(ErrorCode::kInvalidArgument, "tags must be an object of strings");
  if (j.size() > 64) Fail(ErrorCode::kInvalidArgument, "at most 64 tags");
  Tags t;
  for (const auto& [k, v] : j.items()) {
    if (!IsValidTagKey(k)) Fail(ErrorCode::kInvalidArgument, "bad tag name '" + k + "'");
    CheckTagValue(k, v);
    t[k] = v.get<std::string>();
  }
  return t;
}

Packages ParsePackages(const json& j) {
  if (!j.is_object() || j.empty())
    Fail(ErrorCode::kInvalidArgument, "packages must be an object of name: version, not empty");
  Packages p;
  for (const auto& [k, v] : j.items()) {
    if (!IsValidModelName(k)) Fail(ErrorCode::kInvalidArgument, "bad package name '" + k + "'");
    if (!v.is_string() || !IsValidVersionLabel(v.get<std::string>()))
      Fail(ErrorCode::kInvalidArgument, "package '" + k + "': bad version");
    p[k] = v.get<std::string>();
  }
  return p;
}

json DesiredState::ToJson() const {
  json pk = json::object();
  for (const auto& [name, p] : packages)
    pk[name] = {{"version", p.version}, {"deployment", p.deployment}, {"revision", p.revision}};
  return {{"packages", pk}, {"deployments", deployments}, {"etag", etag}};
}

DesiredState ResolveDesiredState(const std::string& device_id, const Tags& tags,
                                 const std::vector<DeploymentView>& deployments) {
  std::vector<const DeploymentView*> matching;
  for (const auto& d : deployments)
    if (d.selector.Matches(tags)) matching.push_back(&d);
  // Low to high priority (ties by name), so later ones win.
  std::sort(matching.begin(), matching.end(), [](const auto* a, const auto* b) {
    return a->priority != b->priority ? a->priority < b->priority : a->name > b->name;
  });
  DesiredState out;
  auto revision_for = [&](const DeploymentView& d) {
    if (d.rollout_to && RolloutKey(d.name, device_id) < d.admit_below) return *d.rollout_to;
    return d.active_revision;
  };
  auto apply = [&](const DeploymentView& d) {
    int64_t rev = revision_for(d);
    auto it = d.revisions.find(rev);
    if (rev == 0 || it == d.revisions.end()) return;
    out.deployments[d.name] = rev;
    for (const auto& [name, version] : it->second) out.packages[name] = {version, d.name, rev};
  };
  const DeploymentView* base = nullptr;
  for (const auto* d : matching)
    if (!d->layered && revision_for(*d) != 0) base = d;  // the last is the highest priority
  if (base) apply(*base);
  for (const auto* d : matching)
    if (d->layered) apply(*d);
  json canon = out.ToJson();
  canon.erase("etag");
  out.etag = "\"" + Sha256Hex(canon.dump()).substr(0, 32) + "\"";
  return out;
}

}  // namespace outpost::fleet
