// The agent's update client: polls an update repository on a schedule (with jitter) or on
// demand, and takes each newer model through A/B slots: fetch (delta when offered), verify,
// install beside the committed version, load and warm up, probe, canary, then commit, or
// roll back and report. Every step leaves the slot record (slots.h) such that a crash at any
// point restarts into the committed version, and the interrupted trial is undone at start-up.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "package/keys.h"
#include "serving/inference_service.h"
#include "serving/metrics.h"
#include "serving/model_manager.h"
#include "update/policy.h"
#include "update/update_client.h"

namespace outpost {

struct UpdateOptions {
  std::string repository_url;       // empty: updates off
  std::filesystem::path root_file;  // the update repository's initial root (shipped)
  std::filesystem::path state_dir;  // trusted metadata, downloads, status
  std::filesystem::path model_repository;
  std::chrono::milliseconds interval{3600 * 1000};
  double jitter = 0.2;  // each wait is interval * (1 +- jitter), so a fleet does not poll in step
  bool check_on_start = true;
  std::chrono::milliseconds canary{30 * 1000};
  double canary_fraction = 0.5;
  double max_error_rate_increase = 0.05;
  std::chrono::milliseconds probe_budget{1000};
  std::map<std::string, nlohmann::json> probes;  // model -> KServe v2 JSON infer request
  // The agent's own A/B slots (outpost-supervisor's --slots); empty: agent updates are skipped.
  std::filesystem::path agent_slots;
  std::string agent_version = OUTPOST_VERSION;  // the running build's slot version
  tuf::UpdatePolicy policy;
  tuf::HttpLimits http;
};

class UpdateService {
 public:
  UpdateService(UpdateOptions options, ModelManager& models, InferenceService& inference,
                const TrustPolicy* trust, MetricsRegistry& metrics);
  ~UpdateService();

  // Undoes trials a crash interrupted. Call before the model manager's first scan.
  void RecoverInterruptedTrials();
  void Start();  // the polling thread
  void Stop();

  // Runs one check now (waiting for any running one first) and returns the status after it.
  // `force` ignores maintenance windows and the metered-network pause, as an operator may.
  nlohmann::json CheckNow(bool force);
  // A fleet server's desired state (model -> version): from now on the device installs exactly
  // these versions (a lower one is a rollback, not refused) and no others; runs one check now.
  // Returns per model {"status": installed | failed | installing, "reason", "version"}.
  nlohmann::json Reconcile(const std::map<std::string, std::string>& desired);
  nlohmann::json Status() const;

 private:
  struct Event {
    std::string model, version, outcome, reason;
    uint64_t bytes = 0;
    bool delta = false;
    double seconds = 0;
  };

  static Event MakeEvent(std::string model, std::string version, std::string outcome,
                         std::string reason);
  void RunCheck(bool force);
  void UpdateModel(const tuf::Offer& offer, bool directed);
  nlohmann::json DesiredStatus(const std::map<std::string, std::string>& desired,
                               const std::vector<tuf::Offer>& offers);
  void StageAgent(const tuf::Offer& offer, bool directed);
  std::filesystem::path FetchWithBase(const tuf::Offer& offer, const std::filesystem::path& dir,
                                      Event& ev);
  void Rollback(const std::filesystem::path& model_dir, SlotState& state,
                const std::string& version, const std::string& reason);
  std::optional<std::string> Probe(const std::string& name, const std::string& version);
  std::optional<std::string> Canary(const std::string& name, const std::string& version,
                                    const std::string& baseline);
  void Record(Event e);
  void SetState(const std::string& state);
  void PersistStatus() const;  // under mu_
  nlohmann::json StatusLocked() const;
  std::chrono::milliseconds NextWait();

  UpdateOptions options_;
  ModelManager& models_;
  InferenceService& inference_;
  const TrustPolicy* trust_;
  MetricsRegistry& metrics_;
  std::unique_ptr<tuf::UpdateClient> client_;
  std::mt19937_64 rng_{std::random_device{}()};

  std::mutex run_mu_;  // one check at a time
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::string state_ = "idle";
  std::string last_result_, last_error_;
  std::string last_check_, next_check_;
  std::deque<Event> events_;
  std::optional<std::map<std::string, std::string>> desired_;  // set by a fleet server
  std::vector<tuf::Offer> last_offers_;
  std::thread thread_;
};

}  // namespace outpost
