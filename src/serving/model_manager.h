// Keeps the served set of model versions in step with the model repository. A version is
// loaded and warmed up before it is published; a version that leaves the repository is
// unpublished at once and drains: requests already holding it finish on it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "llm/chat_model.h"
#include "monitoring/model_monitor.h"
#include "package/keys.h"
#include "runtime/model.h"
#include "serving/metrics.h"
#include "serving/model_config.h"
#include "serving/repository.h"
#include "serving/scheduler.h"
#include "update/slots.h"

namespace outpost {

// Per model version series, created once at load.
struct ModelMetrics {
  Counter* success;
  Counter* inference_count;
  Counter* execution_count;
  Histogram* queue;
  Histogram* compute;
  Histogram* request;
  Histogram* batch_size;
  MetricsRegistry* registry;
  Labels labels;
  Counter& Failure(std::string_view reason) const;
};

struct ServedModel {
  ModelConfig config;
  std::shared_ptr<Model> model;  // null for a chat model
  // A version that ships a tokenizer is a chat model: served by /v1/chat/completions, not by
  // the KServe protocol (its cache inputs mean nothing to a KServe client).
  std::shared_ptr<ChatModel> chat;
  // Drift monitoring of chosen inputs and outputs, when the manifest asks for it.
  std::shared_ptr<ModelMonitor> monitor;
  ModelMetrics metrics;
  std::unique_ptr<Scheduler> scheduler;  // destroyed first: drains before the model goes
  // Resident bytes attributed at load (the process's growth, at least the files' size).
  uint64_t memory_bytes = 0;
  // When a request last took it (steady clock ticks): the memory budget unloads the least
  // recently used model first.
  std::atomic<int64_t> last_used{0};
  ~ServedModel() { scheduler.reset(); }
};

enum class VersionState { kLoading, kReady, kUnavailable };
std::string_view VersionStateName(VersionState state);

struct IndexEntry {
  std::string name;
  std::string version;
  VersionState state;
  std::string reason;
  Placement placement;        // of a served version
  uint64_t memory_bytes = 0;  // of a served version, as ServedModel's
  uint64_t file_bytes = 0;    // the version directory's files
};

// What decides which models are loaded, as Triton's --model-control-mode: kNone loads what the
// repository has once; kPoll also watches it (poll_interval); kExplicit loads only the models
// named at start and through Load/Unload, and applies repository changes only there.
enum class ModelControl { kNone, kPoll, kExplicit };
std::string_view ModelControlName(ModelControl control);
ModelControl ParseModelControl(const std::string& name);  // kInvalidArgument for others

// In the repository: the key that authenticates versions' ORT-format copies (<version>/.derived/).
inline constexpr const char* kDerivationKeyFile = ".derived.key";
inline constexpr const char* kDerivedDir = ".derived";

struct ManagerOptions {
  std::filesystem::path repository;
  ModelControl control = ModelControl::kPoll;
  std::vector<std::string> startup_models;  // kExplicit: loaded by Start(); "*" is every model
  // Versions installed from signed packages are checked against this at every load.
  std::optional<TrustPolicy> trust;
  // Development mode: also serve plain directories that no package signature covers.
  bool allow_unsigned = false;
  // With runtime.ort_format.key set, each version keeps its ORT-format copy in kDerivedDir.
  RuntimeOptions runtime;
  // Resident bytes all loaded models may hold (0: no limit). A load past it first unloads the
  // least recently used idle models, which load again on their next request.
  uint64_t memory_budget_bytes = 0;
  std::chrono::milliseconds poll_interval{1000};  // kPoll; 0 is kNone
  // Where monitors report drift (may be null).
  std::function<void(const DriftEvent&)> on_drift;
  // Where a monitor's captures go; unset: the device does not allow captures, whatever the
  // manifests ask.
  std::function<void(const std::string& model, const std::string& version,
                     const std::vector<Tensor>& inputs)>
      on_capture;
};

// Inputs of zeros in the model's shapes (free dimensions 1, or the manifest's warm-up shapes).
std::vector<Tensor> ZeroInputs(const ModelConfig& config);

class ModelManager {
 public:
  ModelManager(ManagerOptions options, MetricsRegistry& metrics);
  ~ModelManager();

  // Scans the repository and loads what it finds, then (poll_interval > 0) keeps watching.
  void Start();
  void Stop();

  // One reconciliation pass; `settle` requires a changed version to look the same on two
  // passes before it is loaded, so a copy in progress is not picked up half-written. With
  // `only`, versions of other models are left as they are.
  void Reconcile(bool settle, const std::optional<std::string>& only = std::nullopt);

  // Explicit model control (kFailedPrecondition in the other modes). Load brings every version
  // of `name` in the repository in step with its files and returns their index entries; it
  // throws kNotFound for a model the repository does not have, kFailedPrecondition with the
  // reason when no version of it loads. Unload unpublishes its versions (requests holding one
  // finish on it); kNotFound when the model is neither loaded nor in the repository.
  std::vector<IndexEntry> LoadOnRequest(const std::string& name);
  // A package of `name` was installed through the agent (upload or OTA): in explicit mode that
  // is a request to serve it, so the next reconciliation loads it. No-op in the other modes.
  void Want(const std::string& name);
  void UnloadOnRequest(const std::string& name);

  // Throws Error(kNotFound) for an unknown model or version, kUnavailable when it is known
  // but not ready. A model the memory budget unloaded is loaded again first.
  std::shared_ptr<ServedModel> Get(const std::string& name, const std::string& version);
  std::vector<std::string> ReadyVersions(const std::string& name) const;
  std::vector<IndexEntry> Index() const;
  bool IsReady() const;
  // Calls `fn` for every published version, under the manager's lock: keep it short.
  void ForEachServed(const std::function<void(const ServedModel&)>& fn) const;

  // Routing of requests that name no version. By default the model's committed slot (see
  // slots.h), else its highest ready version that is not on trial. During a canary window,
  // `fraction` of them go to the trial version instead.
  void SetCanary(const std::string& name, const std::string& version, double fraction);
  void ClearCanary(const std::string& name);
  // The version a request naming no version would get now ("" when none).
  std::string DefaultVersion(const std::string& name) const;

 private:
  struct Source {
    std::string fingerprint;          // of the version being served (or that failed)
    std::string pending_fingerprint;  // seen once, waiting to settle
    VersionState state = VersionState::kLoading;
    std::string reason;
    uint64_t memory_bytes = 0;  // measured at its last load
    uint64_t file_bytes = 0;
    bool evicted = false;  // unloaded by the memory budget: loads again on its next request
  };
  using Key = std::pair<std::string, std::string>;

  struct Canary {
    std::string version;
    double fraction = 1.0;
    uint64_t requests = 0;
  };

  std::shared_ptr<ServedModel> Load(const VersionSource& src);
  std::shared_ptr<ServedModel> LoadChat(const VersionSource& src,
                                        const std::filesystem::path& model_path,
                                        const Manifest& manifest,
                                        std::shared_ptr<ServedModel> served);
  std::shared_ptr<ServedModel> PickDefault(const std::string& name) const;  // under mu_
  void Warmup(ServedModel& served);
  bool Wanted(const std::string& model) const;  // under mu_
  // Unloads least recently used idle models (whole models, every version) until `need` more
  // bytes fit in the budget beside what is loaded, not counting `loading`'s own versions;
  // throws kResourceExhausted when models in use hold too much. Under mu_; returns what it
  // took out, to be released outside the lock.
  std::vector<std::shared_ptr<ServedModel>> MakeRoom(const std::string& loading, uint64_t need);
  // Unpublishes every version of `name` (under mu_), to load again on its next request.
  void Evict(const std::string& name, const std::string& reason,
             std::vector<std::shared_ptr<ServedModel>>& out);
  // Unloads the models whose versions all have a keep_alive and have been idle that long.
  void UnloadIdle();
  // Gives back what runs left in the runtimes' arenas: on the reclaimer's thread once large
  // requests stop, and from the repository thread once every model has been idle
  // kIdleRelease (then the freed memory too). True when some arena was shrunk.
  bool ShrinkArenas();
  void ReleaseIdleMemory();
  static constexpr std::chrono::seconds kIdleRelease{10};
  // Loads `name` again if the memory budget or its keep_alive unloaded it (one caller loads,
  // the others wait).
  void ReloadIfEvicted(const std::string& name);
  void RequireExplicitControl() const;

  ManagerOptions options_;
  MetricsRegistry& metrics_;
  mutable std::mutex mu_;
  std::map<Key, std::shared_ptr<ServedModel>> served_;
  std::map<Key, Source> sources_;
  std::vector<IndexEntry> problems_;
  std::map<std::string, SlotState> slots_;
  mutable std::map<std::string, Canary> canaries_;
  bool scanned_ = false;
  std::set<std::string> wanted_;  // kExplicit: the models asked for ("*": every one)

  std::mutex reconcile_mu_;
  std::mutex reload_mu_;
  std::atomic<bool> any_evicted_{false};  // until then, requests skip ReloadIfEvicted
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool stop_ = false;
  std::thread watcher_;
  int reclaim_hook_ = 0;  // ShrinkArenas, run when large requests stop
};

}  // namespace outpost
