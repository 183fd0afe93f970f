// The whole serving agent in one object: model manager, inference service, HTTP and gRPC
// front ends, metrics. outpostd is a thin main() around it; tests and benchmarks embed it.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "package/keys.h"
#include "serving/agent_config.h"
#include "serving/model_manager.h"
#include "serving/server_info.h"

namespace outpost {

struct UpdateOptions;
namespace auth {
struct SubjectPolicy;
}

struct BoundPorts {
  int http = 0;
  int grpc = 0;
  int metrics = 0;
};

class Agent {
 public:
  explicit Agent(AgentConfig config);
  ~Agent();
  // Loads the repository, then opens the listeners. Throws Error if a listener cannot bind.
  BoundPorts Start();
  void Stop();
  // The components' health (health/health.h); the watchdog pings systemd while it answers.
  nlohmann::json Health();

 private:
  struct Parts;
  // Explicit model control, from POST /v2/repository/models/{model}/load|unload.
  std::vector<IndexEntry> ControlModel(const std::string& model, bool load,
                                       const std::string& caller);
  IndexEntry InstallUploadedPackage(const std::string& bytes, const std::string& caller);
  // On a device its fleet manages, what is installed is what the fleet wants: a change made at
  // the device (an upload, a forced update check) is refused unless fleet_allow_local_install
  // says otherwise, and then reported to the fleet.
  void CheckLocalChange(const std::string& what) const;
  void ReportLocalChange(const std::string& what, const std::string& caller,
                         nlohmann::json fields = nlohmann::json::object());
  // The parts Start() builds and wires, in its order.
  ManagerOptions MakeManagerOptions();
  void OpenTelemetry(ManagerOptions& mo);
  void StartChat();
  void AddModelCollectors();
  UpdateOptions MakeUpdateOptions() const;
  auth::SubjectPolicy StartAuth();
  int StartGrpc(const auth::SubjectPolicy& subjects);
  int StartMetricsListener(const auth::SubjectPolicy& subjects);
  int StartHttp(const auth::SubjectPolicy& subjects);
  void StartHealth();
  void RegisterHealthChecks();
  std::chrono::steady_clock::duration SummaryInterval() const;
  void SummarizeTelemetry();
  void StartFleetClient();
  AgentConfig config_;
  std::optional<TrustPolicy> trust_;
  ServerInfo info_;
  std::unique_ptr<Parts> parts_;
};

}  // namespace outpost
