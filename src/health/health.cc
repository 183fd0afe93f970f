#include "health/health.h"

#include <sys/timex.h>

#include <ctime>

namespace outpost {

std::string_view HealthStateName(HealthState s) {
  switch (s) {
    case HealthState::kOk:
      return "ok";
    case HealthState::kDegraded:
      return "degraded";
    case HealthState::kFailed:
      return "failed";
  }
  return "?";
}

void HealthRegistry::Register(const std::string& name, bool critical,
                              std::function<ComponentHealth()> check) {
  std::lock_guard lock(mu_);
  checks_[name] = {critical, std::move(check)};
}

nlohmann::json HealthRegistry::Report() {
  std::map<std::string, std::pair<bool, std::function<ComponentHealth()>>> checks;
  {
    std::lock_guard lock(mu_);
    checks = checks_;
  }
  nlohmann::json components = nlohmann::json::object();
  bool ready = true;
  for (const auto& [name, entry] : checks) {
    ComponentHealth h;
    try {
      h = entry.second();
    } catch (const std::exception& e) {
      h = {HealthState::kFailed, std::string("health check failed: ") + e.what()};
    }
    h.critical = entry.first;
    if (h.critical && h.state == HealthState::kFailed) ready = false;
    components[name] = {
        {"state", HealthStateName(h.state)}, {"detail", h.detail}, {"critical", h.critical}};
  }
  return {{"ready", ready}, {"components", components}};
}

bool HealthRegistry::Ready() { return Report()["ready"].get<bool>(); }

ComponentHealth ClockHealth() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  if (tm.tm_year + 1900 < 2024)
    return {HealthState::kFailed,
            "the clock says " + std::to_string(tm.tm_year + 1900) +
                ": signatures and update metadata cannot be checked for expiry"};
  timex tx{};
  int state = adjtimex(&tx);
  if (state == TIME_ERROR || (tx.status & STA_UNSYNC))
    return {HealthState::kDegraded, "not synchronized (no NTP, or it has not converged)"};
  return {HealthState::kOk, "synchronized"};
}

}  // namespace outpost
