#include "serving/model_manager.h"

#include <fmt/format.h>
#include <malloc.h>

#include <algorithm>
#include <set>
#include <thread>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/memory_budget.h"
#include "core/names.h"
#include "core/process_memory.h"
#include "package/package.h"
#include "serving/repository.h"

namespace outpost {
namespace fs = std::filesystem;

namespace {

// ONNX Runtime sessions run calls at once (they share the process's intra-op thread pool), and
// a small model (Silero VAD: a 512-sample chunk) spends most of a call outside that pool: one
// execution per core, up to four, keeps the cores busy without a manifest saying so.
// TorchScript modules keep to one: libtorch's interpreter has its own thread pools.
int DefaultInstanceCount(const std::string& platform) {
  if (platform == "pytorch_libtorch") return 1;
  return std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 4);
}

// The bytes of the regular files under `dir` (a version's weights and the rest, not the copies
// the agent derived from them), symlinks not followed; what cannot be read counts as nothing.
uint64_t DirectoryBytes(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it.depth() == 0 && it->path().filename() == kDerivedDir) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && !it->is_symlink(ec)) total += it->file_size(ec);
  }
  return total;
}

}  // namespace

std::string_view VersionStateName(VersionState state) {
  switch (state) {
    case VersionState::kLoading:
      return "LOADING";
    case VersionState::kReady:
      return "READY";
    case VersionState::kUnavailable:
      return "UNAVAILABLE";
  }
  return "UNKNOWN";
}

std::string_view ModelControlName(ModelControl control) {
  switch (control) {
    case ModelControl::kNone:
      return "none";
    case ModelControl::kPoll:
      return "poll";
    case ModelControl::kExplicit:
      return "explicit";
  }
  return "unknown";
}

ModelControl ParseModelControl(const std::string& name) {
  for (auto c : {ModelControl::kNone, ModelControl::kPoll, ModelControl::kExplicit})
    if (ModelControlName(c) == name) return c;
  Fail(ErrorCode::kInvalidArgument,
       "model control mode '" + name + "' is not one of none, poll, explicit");
}

Counter& ModelMetrics::Failure(std::string_view reason) const {
  Labels l = labels;
  l.emplace_back("reason", std::string(reason));
  return registry->GetCounter("outpost_inference_request_failure_total",
                              "Failed inference requests.", l);
}

ModelManager::ModelManager(ManagerOptions options, MetricsRegistry& metrics)
    : options_(std::move(options)), metrics_(metrics) {
  if (options_.control == ModelControl::kExplicit)
    wanted_.insert(options_.startup_models.begin(), options_.startup_models.end());
  else if (options_.poll_interval.count() <= 0)
    options_.control = ModelControl::kNone;
}

ModelManager::~ModelManager() { Stop(); }

void ModelManager::Start() {
  WarmUpOnnxRuntime();  // so that the first model is not charged for it
  reclaim_hook_ = AddReclaimHook([this] { ShrinkArenas(); });
  Reconcile(/*settle=*/false);
  // One thread scans the repository (poll mode) and unloads models idle past their keep_alive.
  const bool poll = options_.control == ModelControl::kPoll;
  const std::chrono::milliseconds tick =
      poll ? std::min(options_.poll_interval, std::chrono::milliseconds(1000))
           : std::chrono::milliseconds(1000);
  watcher_ = std::thread([this, poll, tick] {
    auto last_scan = Clock::now();
    std::unique_lock lock(watch_mu_);
    while (!watch_cv_.wait_for(lock, tick, [&] { return stop_; })) {
      lock.unlock();
      try {
        if (poll && Clock::now() - last_scan >= options_.poll_interval) {
          last_scan = Clock::now();
          Reconcile(/*settle=*/true);
        }
        UnloadIdle();
        ReleaseIdleMemory();
      } catch (const std::exception& e) {
        Log(LogSeverity::kError, "serving", "repository_scan_failed",
            std::string("repository scan failed: ") + e.what());
      }
      lock.lock();
    }
  });
}

void ModelManager::Stop() {
  {
    std::lock_guard lock(watch_mu_);
    stop_ = true;
  }
  watch_cv_.notify_all();
  if (watcher_.joinable()) watcher_.join();
  if (reclaim_hook_) RemoveReclaimHook(std::exchange(reclaim_hook_, 0));
}

void ModelManager::ReleaseIdleMemory() {
  Clock::duration last{0};
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, m] : served_)
      last = std::max(last, Clock::duration(m->last_used.load(std::memory_order_relaxed)));
  }
  if (Clock::now().time_since_epoch() - last < kIdleRelease) return;
  if (ShrinkArenas()) ReturnFreedMemory();
}

bool ModelManager::ShrinkArenas() {
  std::vector<std::shared_ptr<ServedModel>> grown;
  {
    std::lock_guard lock(mu_);
    for (const auto& [key, served] : served_)
      if (served->model && served->model->ArenaGrown()) grown.push_back(served);
  }
  for (const auto& served : grown) {
    try {
      served->model->ShrinkArena(ZeroInputs(served->config));
    } catch (const std::exception& e) {
      Log(LogSeverity::kDebug, "runtime", "arena_kept",
          fmt::format("model {} version {}: its memory arena stays grown (a run on zeros "
                      "failed: {})",
                      served->config.name, served->config.version, e.what()),
          {{"model", served->config.name}, {"version", served->config.version}});
    }
  }
  return !grown.empty();
}

void ModelManager::Reconcile(bool settle, const std::optional<std::string>& only) {
  std::lock_guard reconcile_lock(reconcile_mu_);
  RepositoryScan scan = ScanRepository(options_.repository);
  {
    std::lock_guard lock(mu_);
    if (wanted_.erase("*"))  // --load-model '*': every model there is at start, each unloadable
      for (const auto& src : scan.versions) wanted_.insert(src.model);
  }
  std::set<Key> present;
  // Whether this pass may change what is served of `model`.
  auto in_scope = [&](const std::string& model) { return !only || *only == model; };
  for (const auto& src : scan.versions) {
    Key key{src.model, src.version};
    present.insert(key);
    if (!in_scope(src.model)) continue;
    {
      std::lock_guard lock(mu_);
      if (!Wanted(src.model)) {  // known, and not loaded until someone asks (Triton's words)
        sources_[key] = Source{.state = VersionState::kUnavailable, .reason = "unloaded"};
        continue;
      }
      auto& s = sources_[key];
      if (s.fingerprint == src.fingerprint && s.state != VersionState::kLoading) continue;
      if (settle && s.pending_fingerprint != src.fingerprint) {
        s.pending_fingerprint =
            src.fingerprint;  // seen once; load when it looks the same next pass
        if (s.fingerprint.empty()) s.state = VersionState::kLoading;
        continue;
      }
      if (s.fingerprint.empty()) s.state = VersionState::kLoading;
    }
    std::shared_ptr<ServedModel> loaded;
    std::string reason;
    bool over_budget = false;
    const uint64_t file_bytes = DirectoryBytes(src.dir);
    std::vector<std::shared_ptr<ServedModel>> unloaded;  // released outside the lock
    try {
      {
        std::lock_guard lock(mu_);
        unloaded = MakeRoom(src.model, std::max(file_bytes, sources_[key].memory_bytes));
      }
      const uint64_t before = ResidentBytes();
      loaded = Load(src);
      malloc_trim(0);  // what parsing freed is not the model's
      const uint64_t after = ResidentBytes();
      loaded->memory_bytes = std::max(after > before ? after - before : 0, file_bytes);
    } catch (const Error& e) {
      reason = e.what();
      over_budget = e.code() == ErrorCode::kResourceExhausted;
    } catch (const std::exception& e) {
      reason = e.what();
    }
    std::shared_ptr<ServedModel> replaced;
    {
      std::lock_guard lock(mu_);
      auto& s = sources_[key];
      s.fingerprint = src.fingerprint;
      s.pending_fingerprint = src.fingerprint;
      s.file_bytes = file_bytes;
      s.evicted = over_budget;  // tried again on its next request
      if (loaded) {
        loaded->last_used = Clock::now().time_since_epoch().count();
        s.memory_bytes = loaded->memory_bytes;
        auto& slot = served_[key];
        replaced = std::move(slot);
        slot = loaded;
        s.state = VersionState::kReady;
        s.reason.clear();
        // The first load of a model is estimated from its files; what it really took may
        // push others out.
        try {
          for (auto& m : MakeRoom(src.model, 0)) unloaded.push_back(std::move(m));
        } catch (const Error& e) {
          Log(LogSeverity::kWarn, "serving", "memory_budget_exceeded",
              fmt::format("model {} version {} loaded past the memory budget: {}", src.model,
                          src.version, e.what()),
              {{"model", src.model}, {"version", src.version}});
        }
      } else if (served_.count(key)) {
        // The files changed and the new ones do not load: keep serving what was there.
        s.state = VersionState::kReady;
        s.reason = "kept the previous files: the new ones failed to load: " + reason;
      } else {
        s.state = VersionState::kUnavailable;
        s.reason = reason;
      }
    }
    if (loaded) {
      Log(LogSeverity::kInfo, "serving", "model_ready",
          fmt::format("model {} version {} is ready{}", src.model, src.version,
                      replaced ? " (replaced the previous files)" : ""),
          {{"model", src.model}, {"version", src.version}});
    } else {
      Log(LogSeverity::kWarn, "serving", "model_not_loaded",
          fmt::format("model {} version {} not loaded: {}", src.model, src.version, reason),
          {{"model", src.model}, {"version", src.version}, {"reason", reason}});
    }
    // `replaced` drains here, outside the lock, once the last request holding it returns.
  }
  std::map<std::string, SlotState> slots;
  for (const auto& src : scan.versions) {
    if (slots.count(src.model)) continue;
    try {
      if (auto s = ReadSlots(src.dir.parent_path())) slots[src.model] = *s;
    } catch (const std::exception& e) {
      Log(LogSeverity::kWarn, "serving", "slots_unreadable",
          fmt::format("model {}: {}; serving its highest version", src.model, e.what()),
          {{"model", src.model}});
    }
  }
  std::vector<std::shared_ptr<ServedModel>> removed;
  {
    std::lock_guard lock(mu_);
    slots_ = std::move(slots);
    for (auto it = served_.begin(); it != served_.end();) {
      const auto& [model, version] = it->first;
      bool gone = !present.count(it->first);
      if (in_scope(model) && (gone || !Wanted(model))) {
        Log(LogSeverity::kInfo, "serving", "model_unloading",
            fmt::format("model {} version {} {}", model, version,
                        gone ? "left the repository: unloading" : "unloading on request"),
            {{"model", model}, {"version", version}});
        removed.push_back(std::move(it->second));
        it = served_.erase(it);
      } else {
        ++it;
      }
    }
    std::erase_if(sources_, [&](const auto& kv) {
      return in_scope(kv.first.first) && !present.count(kv.first);
    });
    std::vector<IndexEntry> problems;
    for (const auto& p : scan.problems) {
      problems.push_back({p.model, p.version, VersionState::kUnavailable, p.reason});
      bool known = std::any_of(problems_.begin(), problems_.end(), [&](const IndexEntry& e) {
        return e.name == p.model && e.version == p.version && e.reason == p.reason;
      });
      if (!known)
        Log(LogSeverity::kWarn, "serving", "entry_not_served",
            fmt::format("repository entry '{}' {} not served: {}", p.model, p.version, p.reason),
            {{"model", p.model}, {"version", p.version}, {"reason", p.reason}});
    }
    problems_ = std::move(problems);
    scanned_ = true;
  }
  removed.clear();
  // Loading parses whole model files into temporary buffers; hand the freed pages back to the
  // OS so that an idle agent's resident memory reflects what it keeps, not what it once parsed.
  malloc_trim(0);
}

std::shared_ptr<ServedModel> ModelManager::Load(const VersionSource& src) {
  Manifest manifest;
  if (fs::exists(src.dir / kInstalledPackageDir / "manifest.json")) {
    if (!options_.trust) {
      Fail(ErrorCode::kPermissionDenied,
           "a signed package, but the agent has no trust file (--trust-file)");
    }
    PackageReport r = VerifyInstalledVersion(src.dir, *options_.trust);
    if (r.manifest.name != src.model || r.manifest.version != src.version) {
      Fail(ErrorCode::kPermissionDenied, "signed as " + r.manifest.name + " " + r.manifest.version +
                                             " but installed as " + src.model + "/" + src.version);
    }
    CheckAgentVersion(r.manifest, OUTPOST_VERSION);
    if (r.manifest.json.value("runtime", "onnx") == "agent")
      Fail(ErrorCode::kInvalidArgument, "an agent build (runtime \"agent\"), not a model");
    // The serving settings come from what was signed, not from files beside it.
    manifest = ParseManifest(RepositoryManifest(r.manifest).dump());
  } else {
    if (!options_.allow_unsigned) {
      Fail(ErrorCode::kPermissionDenied,
           "not a signed package: install it with `outpost install`, or start outpostd with "
           "--allow-unsigned-models "
           "(development only)");
    }
    fs::path manifest_path = src.dir / "manifest.json";
    if (fs::exists(manifest_path)) manifest = ParseManifest(ReadFile(manifest_path));
  }
  fs::path model_path = src.dir / manifest.model_file;
  if (!fs::is_regular_file(model_path)) {
    Fail(ErrorCode::kNotFound, "no " + manifest.model_file + " in " + src.dir.string());
  }
  if (!IsPathInside(src.dir, model_path))
    Fail(ErrorCode::kInvalidArgument,
         manifest.model_file + " resolves outside its version directory");
  auto served = std::make_shared<ServedModel>();
  if (IsChatModelDir(src.dir)) return LoadChat(src, model_path, manifest, std::move(served));
  RuntimeOptions runtime = options_.runtime;
  if (!runtime.ort_format.key.empty()) runtime.ort_format.dir = src.dir / kDerivedDir;
  ApplyDeclaredTensors(manifest, runtime);
  std::shared_ptr<Model> model = LoadModel(manifest.runtime, model_path, runtime);
  served->config = BuildModelConfig(src.model, src.version, model_path, model->inputs(),
                                    model->outputs(), manifest);
  served->config.platform = model->platform();
  served->config.placement = model->placement();
  served->model = model;
  Labels labels{{"model", src.model}, {"version", src.version}};
  auto latency = MetricsRegistry::LatencyBuckets();
  auto& m = served->metrics;
  m.registry = &metrics_;
  m.labels = labels;
  m.success = &metrics_.GetCounter("outpost_inference_request_success_total",
                                   "Successful inference requests.", labels);
  m.inference_count =
      &metrics_.GetCounter("outpost_inference_count_total",
                           "Inferences performed (a batched request counts once per row).", labels);
  m.execution_count =
      &metrics_.GetCounter("outpost_inference_exec_count_total",
                           "Model executions (a dynamic batch counts once).", labels);
  m.queue = &metrics_.GetHistogram("outpost_inference_queue_duration_seconds",
                                   "Time requests waited in the queue.", labels, latency);
  m.compute = &metrics_.GetHistogram("outpost_inference_compute_duration_seconds",
                                     "Time the model ran per request.", labels, latency);
  m.request =
      &metrics_.GetHistogram("outpost_inference_request_duration_seconds",
                             "Time from decoded request to encoded response.", labels, latency);
  m.batch_size = &metrics_.GetHistogram("outpost_inference_batch_size", "Rows per model execution.",
                                        labels, MetricsRegistry::BatchBuckets());
  if (manifest.raw.is_object() && manifest.raw.contains("monitoring")) {
    MonitorSpec spec = ParseMonitorSpec(manifest.raw["monitoring"]);
    for (const auto& f : spec.features) {
      auto named = [&](const TensorSpec& t) { return t.name == f.tensor; };
      if (std::none_of(served->config.inputs.begin(), served->config.inputs.end(), named) &&
          std::none_of(served->config.outputs.begin(), served->config.outputs.end(), named))
        Fail(ErrorCode::kInvalidArgument,
             "manifest: monitoring: the model has no input or output '" + f.tensor + "'");
    }
    std::function<void(const std::vector<Tensor>&)> capture;
    if (options_.on_capture)
      capture = [f = options_.on_capture, model = src.model, version = src.version](
                    const std::vector<Tensor>& inputs) { f(model, version, inputs); };
    served->monitor = std::make_shared<ModelMonitor>(src.model, src.version, std::move(spec),
                                                     options_.on_drift, std::move(capture));
  }
  if (served->config.warmup) Warmup(*served);
  if (served->config.instance_count == 0)
    served->config.instance_count = DefaultInstanceCount(served->config.platform);
  const auto& c = served->config;
  SchedulerOptions so{c.instance_count,  c.max_queue_size, c.max_batch_size, c.dynamic_batching,
                      c.max_queue_delay, c.name,           c.version};
  ModelMetrics* mm = &served->metrics;
  served->scheduler = std::make_unique<Scheduler>(model, so, [mm](int rows) {
    mm->execution_count->Add();
    mm->inference_count->Add(rows);
    mm->batch_size->Observe(rows);
  });
  return served;
}

std::shared_ptr<ServedModel> ModelManager::LoadChat(const VersionSource& src,
                                                    const fs::path& model_path,
                                                    const Manifest& manifest,
                                                    std::shared_ptr<ServedModel> served) {
  const nlohmann::json settings =
      manifest.raw.is_object() ? manifest.raw : nlohmann::json::object();
  served->chat = std::make_shared<ChatModel>(model_path, settings, options_.runtime);
  served->config.name = src.model;
  served->config.version = src.version;
  served->config.platform = "onnxruntime_onnx";
  served->config.model_path = model_path;
  served->config.description = settings.value("description", "");
  Labels labels{{"model", src.model}, {"version", src.version}};
  auto& m = served->metrics;
  m.registry = &metrics_;
  m.labels = labels;
  m.success = &metrics_.GetCounter("outpost_inference_request_success_total",
                                   "Successful inference requests.", labels);
  const auto warmup = settings.find("warmup");
  if (warmup == settings.end() || !warmup->is_boolean() || warmup->get<bool>()) {
    // One token through the model, so that the first request does not pay for lazy setup.
    GenerateOptions one;
    one.max_tokens = 1;
    one.sampling.temperature = 0;
    auto ids = served->chat->Tokenize(served->chat->RenderPrompt({{"user", "hi"}}));
    served->chat->Generate(ids, one, nullptr);
  }
  return served;
}

// One run on zeros so that the first real request does not pay for lazy initialisation.
// A model that cannot run on zeros still serves; the failure is logged.
std::vector<Tensor> ZeroInputs(const ModelConfig& config) {
  std::vector<Tensor> inputs;
  for (const auto& spec : config.inputs) {
    Tensor t{spec.name, spec.dtype, spec.shape, {}};
    if (auto it = config.warmup_shapes.find(spec.name); it != config.warmup_shapes.end())
      t.shape = it->second;
    for (auto& d : t.shape) d = d < 0 ? 1 : d;
    uint64_t count = ElementCount(t.shape, 1u << 26);
    if (spec.dtype == DataType::kBytes) {
      for (uint64_t i = 0; i < count; ++i) AppendBytesElement(t.data, "");
    } else {
      t.data.assign(count * ElementSize(spec.dtype), '\0');
    }
    inputs.push_back(std::move(t));
  }
  return inputs;
}

void ModelManager::Warmup(ServedModel& served) {
  try {
    served.model->Run(ZeroInputs(served.config), {});
  } catch (const std::exception& e) {
    Log(LogSeverity::kInfo, "runtime", "warmup_failed",
        fmt::format("model {} version {}: warm-up on zeros failed (serving anyway): {}",
                    served.config.name, served.config.version, e.what()),
        {{"model", served.config.name}, {"version", served.config.version}});
  }
}

std::shared_ptr<ServedModel> ModelManager::Get(const std::string& name,
                                               const std::string& version) {
  if (any_evicted_) ReloadIfEvicted(name);
  std::lock_guard lock(mu_);
  auto used = [](const std::shared_ptr<ServedModel>& m) {
    m->last_used.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    return m;
  };
  if (version.empty()) {
    if (auto c = canaries_.find(name); c != canaries_.end()) {
      // Spread evenly: request k goes to the trial when floor(k*f) advances.
      uint64_t k = c->second.requests++;
      double f = c->second.fraction;
      if (static_cast<uint64_t>((k + 1) * f) > static_cast<uint64_t>(k * f)) {
        if (auto it = served_.find({name, c->second.version}); it != served_.end())
          return used(it->second);
      }
    }
    if (auto best = PickDefault(name)) return used(best);
  } else if (auto it = served_.find({name, version}); it != served_.end()) {
    return used(it->second);
  }
  bool known = false;
  std::string reason;
  for (auto it = sources_.lower_bound({name, ""}); it != sources_.end() && it->first.first == name;
       ++it) {
    if (version.empty() || it->first.second == version) {
      known = true;
      if (!it->second.reason.empty()) reason = it->second.reason;
    }
  }
  std::string what = "model '" + name + "'" + (version.empty() ? "" : " version '" + version + "'");
  if (known)
    Fail(ErrorCode::kUnavailable, what + " is not ready" + (reason.empty() ? "" : ": " + reason));
  Fail(ErrorCode::kNotFound, what + " is not in the repository");
}

std::shared_ptr<ServedModel> ModelManager::PickDefault(const std::string& name) const {
  const SlotState* slots = nullptr;
  if (auto it = slots_.find(name); it != slots_.end()) slots = &it->second;
  if (slots && !slots->committed.empty()) {
    if (auto it = served_.find({name, slots->committed}); it != served_.end()) return it->second;
  }
  std::shared_ptr<ServedModel> best;
  for (auto it = served_.lower_bound({name, ""}); it != served_.end() && it->first.first == name;
       ++it) {
    const std::string& v = it->first.second;
    if (slots && (v == slots->trial || slots->HasFailed(v))) continue;
    if (!best || CompareVersions(v, best->config.version) > 0) best = it->second;
  }
  return best;
}

void ModelManager::SetCanary(const std::string& name, const std::string& version, double fraction) {
  std::lock_guard lock(mu_);
  canaries_[name] = Canary{version, std::clamp(fraction, 0.0, 1.0), 0};
}

void ModelManager::ClearCanary(const std::string& name) {
  std::lock_guard lock(mu_);
  canaries_.erase(name);
}

std::string ModelManager::DefaultVersion(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto best = PickDefault(name);
  return best ? best->config.version : "";
}

std::vector<std::string> ModelManager::ReadyVersions(const std::string& name) const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (auto it = served_.lower_bound({name, ""}); it != served_.end() && it->first.first == name;
       ++it) {
    out.push_back(it->first.second);
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return CompareVersions(a, b) < 0; });
  return out;
}

std::vector<IndexEntry> ModelManager::Index() const {
  std::lock_guard lock(mu_);
  std::vector<IndexEntry> out;
  for (const auto& [key, s] : sources_) {
    IndexEntry e{key.first, key.second, s.state, s.reason, {}, 0, s.file_bytes};
    if (auto it = served_.find(key); it != served_.end()) {
      e.placement = it->second->config.placement;
      e.memory_bytes = it->second->memory_bytes;
    }
    out.push_back(std::move(e));
  }
  out.insert(out.end(), problems_.begin(), problems_.end());
  return out;
}

void ModelManager::ForEachServed(const std::function<void(const ServedModel&)>& fn) const {
  std::lock_guard lock(mu_);
  for (const auto& [key, served] : served_) fn(*served);
}

std::vector<std::shared_ptr<ServedModel>> ModelManager::MakeRoom(const std::string& loading,
                                                                 uint64_t need) {
  std::vector<std::shared_ptr<ServedModel>> out;
  const uint64_t budget = options_.memory_budget_bytes;
  if (!budget) return out;
  for (;;) {
    // Per model: the bytes its versions hold, whether a request holds any, when last used.
    struct Use {
      uint64_t bytes = 0;
      bool busy = false;
      int64_t last_used = 0;
    };
    std::map<std::string, Use> models;
    uint64_t held = 0;
    for (const auto& [key, m] : served_) {
      if (key.first == loading) continue;
      Use& u = models[key.first];
      u.bytes += m->memory_bytes;
      u.busy |= m.use_count() > 1;  // a request (or the scheduler's queue) holds it
      u.last_used = std::max(u.last_used, m->last_used.load(std::memory_order_relaxed));
      held += m->memory_bytes;
    }
    if (held + need <= budget) return out;
    const std::string* victim = nullptr;
    for (const auto& [name, u] : models)
      if (!u.busy && (!victim || u.last_used < models[*victim].last_used)) victim = &name;
    if (!victim)
      Fail(ErrorCode::kResourceExhausted,
           fmt::format("memory budget: '{}' needs about {:.1f} MiB, and models in use hold {:.1f} "
                       "of the {:.1f} MiB budget",
                       loading, need / 1048576.0, held / 1048576.0, budget / 1048576.0));
    const std::string name = *victim;
    Log(LogSeverity::kInfo, "serving", "model_evicted",
        fmt::format("model {} unloaded to make room for {} (memory budget {:.1f} MiB; it held "
                    "{:.1f} MiB and was the least recently used)",
                    name, loading, budget / 1048576.0, models[name].bytes / 1048576.0),
        {{"model", name}});
    Evict(name, "unloaded to stay within the memory budget; loads again on its next request", out);
  }
}

void ModelManager::Evict(const std::string& name, const std::string& reason,
                         std::vector<std::shared_ptr<ServedModel>>& out) {
  for (auto it = served_.lower_bound({name, ""}); it != served_.end() && it->first.first == name;) {
    Source& s = sources_[it->first];
    s.state = VersionState::kUnavailable;
    s.evicted = true;
    s.reason = reason;
    out.push_back(std::move(it->second));
    it = served_.erase(it);
  }
  any_evicted_ = true;
}

void ModelManager::UnloadIdle() {
  std::vector<std::shared_ptr<ServedModel>> unloaded;  // released outside the lock
  std::lock_guard lock(mu_);
  const Clock::duration now = Clock::now().time_since_epoch();
  // Per model: its keep_alive when every version has one and has been idle that long.
  std::map<std::string, std::optional<std::chrono::seconds>> verdict;
  for (const auto& [key, m] : served_) {
    const std::chrono::seconds keep = m->config.keep_alive;
    const bool idle = keep.count() > 0 && m.use_count() == 1 &&
                      now - Clock::duration(m->last_used.load(std::memory_order_relaxed)) >= keep;
    auto [it, first] = verdict.try_emplace(key.first, keep);
    if (!idle) it->second = std::nullopt;
  }
  for (const auto& [name, keep] : verdict) {
    if (!keep) continue;
    const std::string why =
        fmt::format("unloaded after {} s without requests (keep_alive_secs)", keep->count());
    Log(LogSeverity::kInfo, "serving", "model_idle_unloaded", "model " + name + " " + why,
        {{"model", name}});
    Evict(name, why + "; loads again on its next request", unloaded);
  }
}

void ModelManager::ReloadIfEvicted(const std::string& name) {
  auto evicted = [&] {
    std::lock_guard lock(mu_);
    for (auto it = sources_.lower_bound({name, ""});
         it != sources_.end() && it->first.first == name; ++it)
      if (it->second.evicted) return true;
    return false;
  };
  if (!evicted()) return;
  std::lock_guard reload(reload_mu_);
  if (!evicted()) return;  // loaded by the caller this one waited for
  {
    std::lock_guard lock(mu_);
    for (auto it = sources_.lower_bound({name, ""});
         it != sources_.end() && it->first.first == name; ++it)
      if (it->second.evicted) it->second.fingerprint.clear();  // load it whatever it looks like
  }
  const auto start = Clock::now();
  Reconcile(/*settle=*/false, name);
  Log(LogSeverity::kInfo, "serving", "model_reloaded",
      fmt::format("model {} loaded again for a request in {:.0f} ms", name,
                  std::chrono::duration<double, std::milli>(Clock::now() - start).count()),
      {{"model", name}});
}

bool ModelManager::Wanted(const std::string& model) const {
  return options_.control != ModelControl::kExplicit || wanted_.count(model);
}

void ModelManager::RequireExplicitControl() const {
  if (options_.control != ModelControl::kExplicit)
    Fail(ErrorCode::kFailedPrecondition,
         fmt::format("models are loaded and unloaded on request only with --model-control-mode "
                     "explicit (this agent's mode is {})",
                     ModelControlName(options_.control)));
}

std::vector<IndexEntry> ModelManager::LoadOnRequest(const std::string& name) {
  RequireExplicitControl();
  bool added;
  {
    std::lock_guard lock(mu_);
    added = wanted_.insert(name).second;
  }
  Reconcile(/*settle=*/false, name);
  std::vector<IndexEntry> entries;
  for (auto& e : Index())
    if (e.name == name) entries.push_back(std::move(e));
  bool ready = std::any_of(entries.begin(), entries.end(),
                           [](const IndexEntry& e) { return e.state == VersionState::kReady; });
  if (entries.empty() || !ready) {
    if (added) {  // a model that could not load is not left asked for
      std::lock_guard lock(mu_);
      wanted_.erase(name);
    }
    if (entries.empty())
      Fail(ErrorCode::kNotFound, "model '" + name + "' is not in the model repository");
    Fail(ErrorCode::kFailedPrecondition,
         "failed to load '" + name + "': " +
             (entries.front().reason.empty() ? "no version is ready" : entries.front().reason));
  }
  return entries;
}

void ModelManager::Want(const std::string& name) {
  if (options_.control != ModelControl::kExplicit) return;
  std::lock_guard lock(mu_);
  wanted_.insert(name);
}

void ModelManager::UnloadOnRequest(const std::string& name) {
  RequireExplicitControl();
  bool known;
  {
    std::lock_guard lock(mu_);
    auto it = sources_.lower_bound({name, ""});
    known = wanted_.erase(name) > 0 || (it != sources_.end() && it->first.first == name);
  }
  if (!known)
    Fail(ErrorCode::kNotFound,
         "model '" + name + "' is neither loaded nor in the model repository");
  Reconcile(/*settle=*/false, name);
}

bool ModelManager::IsReady() const {
  // Ready once the first scan has loaded what it found; later loads (hot swaps) do not flap it.
  std::lock_guard lock(mu_);
  return scanned_;
}

}  // namespace outpost
