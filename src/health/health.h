// The agent's health as components, each ok, degraded or failed with a detail: runtime,
// models, storage, update client, cloud link, clock, resources. Ready means no critical
// component has failed and load is not being shed.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

namespace outpost {

enum class HealthState { kOk, kDegraded, kFailed };
std::string_view HealthStateName(HealthState s);

struct ComponentHealth {
  HealthState state = HealthState::kOk;
  std::string detail;
  bool critical = false;  // a failure makes the agent not ready
};

class HealthRegistry {
 public:
  // A check runs at each report (it must be quick: it reads state, it does no I/O to speak of).
  void Register(const std::string& name, bool critical, std::function<ComponentHealth()> check);
  // {"ready": bool, "components": {name: {state, detail, critical}}}
  nlohmann::json Report();
  bool Ready();

 private:
  std::mutex mu_;
  std::map<std::string, std::pair<bool, std::function<ComponentHealth()>>> checks_;
};

// The system clock is plausible and, where the kernel says so, synchronized.
ComponentHealth ClockHealth();

}  // namespace outpost
