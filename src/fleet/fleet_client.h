// The agent's side of a fleet server: enrolls once with a one-time token (a new Ed25519 key
// that never leaves the device), then polls its desired state (ETag, jittered interval, backoff
// while the server cannot be reached), hands changes to the OTA machinery through a hook, and
// reports what it runs and how it is. The last desired state is kept on disk, so a device that
// restarts while offline keeps working towards it and catches up when the link returns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "package/keys.h"

namespace outpost::fleet {

struct FleetClientOptions {
  std::string url;                  // the fleet server
  std::filesystem::path state_dir;  // device.key (0600), identity.json, desired.json
  std::string enrollment_token;     // used once, while there is no identity yet
  std::chrono::milliseconds poll{60 * 1000};
  double jitter = 0.2;
  std::string agent_version;
  nlohmann::json capabilities = nlohmann::json::object();
};

struct FleetHooks {
  // Applies desired package versions; returns per package {"status", "reason", "version"}.
  std::function<nlohmann::json(const std::map<std::string, std::string>&)> reconcile;
  std::function<nlohmann::json()> health;  // {"ready": bool, "error_rate", "latency_ms", ...}
  std::function<nlohmann::json()> models;  // what runs now: {name: version}
};

class FleetClient {
 public:
  FleetClient(FleetClientOptions options, FleetHooks hooks);
  ~FleetClient();

  void Start();
  void Stop();
  // One round: enroll if needed, poll, reconcile on a change (or while something is still
  // installing), report. False when the server could not be reached or refused.
  bool PollOnce();
  nlohmann::json Status() const;
  // A signed POST on this device's behalf (its telemetry); 0 with a reason while the device is
  // not enrolled or the server cannot be reached. Requests leave one at a time, in time order.
  long PostSigned(const std::string& path, const std::string& body,
                  const std::vector<std::string>& headers, std::string* answer);

 private:
  struct Response {
    long status = 0;  // 0: no answer
    std::string body, etag, error;
  };
  Response Send(const std::string& method, const std::string& path, const std::string& body,
                const std::vector<std::string>& extra_headers = {});
  void Enroll();
  void LoadIdentity();
  nlohmann::json DeploymentsReport(const nlohmann::json& desired, const nlohmann::json& applied);
  void Run();

  FleetClientOptions options_;
  FleetHooks hooks_;
  mutable std::mutex send_mu_;  // one request at a time: the server wants request times in order
  std::optional<SigningKey> key_;
  std::string device_id_;
  int64_t last_request_ms_ = 0;
  nlohmann::json desired_;  // the last desired state accepted
  nlohmann::json applied_;  // what the last reconcile said, per package
  bool pending_ = false;    // something was still installing: reconcile again next round
  int polls_ = 0;

  mutable std::mutex mu_;
  std::string last_error_, last_poll_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::mt19937_64 rng_{std::random_device{}()};
  std::thread thread_;
};

}  // namespace outpost::fleet
