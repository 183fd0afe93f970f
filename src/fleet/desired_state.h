// Desired state: which package versions each device should run, resolved from deployments.
//
// A deployment targets devices by tags (a selector), has a priority, and is either a base or a
// layer, as in Azure IoT Edge: a device gets the packages of the highest-priority base
// deployment that selects it, then those of every layer that selects it, applied from low to
// high priority (a layer's version of a package wins over the base's and over lower layers').
// While a rollout moves a deployment from one revision to the next, a device gets the new
// revision only when its rollout key (fleet/rollout.h) is below the bound its current wave
// admits; otherwise the revision everyone has.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace outpost::fleet {

using Tags = std::map<std::string, std::string>;
using Packages = std::map<std::string, std::string>;  // package name -> version

// {"site": "berlin", "hw": ["pi4", "pi5"]}: every key must match one of its values; {} selects
// every device.
struct Selector {
  std::map<std::string, std::vector<std::string>> any_of;
  bool Matches(const Tags& tags) const;
  nlohmann::json ToJson() const;
  static Selector Parse(const nlohmann::json& j);  // throws Error(kInvalidArgument)
};

Tags ParseTags(const nlohmann::json& j);  // string values, safe keys; throws
Packages ParsePackages(const nlohmann::json& j);

struct DeploymentView {
  std::string name;
  Selector selector;
  int64_t priority = 0;
  bool layered = false;
  int64_t active_revision = 0;  // 0: nobody has it yet
  std::map<int64_t, Packages> revisions;
  // A running rollout: to_revision for devices whose RolloutKey is below `admit_below`.
  std::optional<int64_t> rollout_to;
  int64_t admit_below = 0;
};

struct ResolvedPackage {
  std::string version;
  std::string deployment;
  int64_t revision = 0;
};

struct DesiredState {
  std::map<std::string, ResolvedPackage> packages;
  std::map<std::string, int64_t> deployments;  // deployment -> revision this device gets
  std::string etag;                            // changes exactly when the above change
  nlohmann::json ToJson() const;
};

DesiredState ResolveDesiredState(const std::string& device_id, const Tags& tags,
                                 const std::vector<DeploymentView>& deployments);

}  // namespace outpost::fleet
