#include "serving/update_service.h"

#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <cstdlib>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/names.h"
#include "package/package.h"
#include "runtime/model.h"
#include "serving/http_codec.h"
#include "update/slots.h"

namespace outpost {
namespace fs = std::filesystem;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

namespace {

// Fault injection for the power-loss test: OUTPOST_TEST_CRASH_AT=<step> kills the agent with
// SIGKILL when an update reaches that step. Unset in production, where this is one getenv.
void CrashPoint(const char* step) {
  static const char* at = std::getenv("OUTPOST_TEST_CRASH_AT");
  if (at && std::string_view(at) == step) {
    FlushLog();
    ::raise(SIGKILL);
  }
}

std::string Now() { return tuf::FormatExpiry(std::chrono::system_clock::now()); }

std::string HostOf(const std::string& url) {
  auto start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  auto end = url.find_first_of(":/", start);
  std::string host = url.substr(start, end == std::string::npos ? end : end - start);
  if (!host.empty() && host.front() == '[') host = host.substr(1, host.find(']') - 1);
  return host;
}

// Removes every version directory of `model_dir` except `keep` (and dot-named entries).
void RemoveVersionsExcept(const fs::path& model_dir, const std::vector<std::string>& keep) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(model_dir, ec)) {
    std::string n = e.path().filename().string();
    if (n.empty() || n[0] == '.' || !e.is_directory()) continue;
    if (std::find(keep.begin(), keep.end(), n) != keep.end()) continue;
    fs::remove_all(e.path(), ec);
    if (ec)
      Log(LogSeverity::kWarn, "update", "cleanup_failed",
          fmt::format("cannot remove {}: {}", e.path().string(), ec.message()));
  }
}

// Server-side outcomes of a version: what the canary compares.
struct Outcomes {
  double ok = 0, failed = 0;
};

Outcomes OutcomesOf(MetricsRegistry& metrics, const std::string& model,
                    const std::string& version) {
  Labels l{{"model", model}, {"version", version}};
  Outcomes o;
  o.ok = metrics.GetCounter("outpost_inference_request_success_total", "", l).value();
  for (const char* reason : {"internal", "timeout"}) {
    Labels f = l;
    f.emplace_back("reason", reason);
    o.failed += metrics.GetCounter("outpost_inference_request_failure_total", "", f).value();
  }
  return o;
}

}  // namespace

UpdateService::UpdateService(UpdateOptions options, ModelManager& models,
                             InferenceService& inference, const TrustPolicy* trust,
                             MetricsRegistry& metrics)
    : options_(std::move(options)),
      models_(models),
      inference_(inference),
      trust_(trust),
      metrics_(metrics) {
  if (!trust_)
    Fail(ErrorCode::kFailedPrecondition,
         "updates need a trust file (--trust-file): packages are verified before they install");
  tuf::UpdateSource source{options_.repository_url, options_.state_dir, options_.root_file,
                           options_.http};
  source.http.max_bytes_per_second = options_.policy.max_bytes_per_second;
  source.http.on_progress = [](uint64_t) { CrashPoint("downloading"); };
  client_ = std::make_unique<tuf::UpdateClient>(source);
}

UpdateService::~UpdateService() { Stop(); }

void UpdateService::RecoverInterruptedTrials() {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(options_.model_repository, ec)) {
    if (!e.is_directory() || e.path().filename().string()[0] == '.') continue;
    std::optional<SlotState> s;
    try {
      s = ReadSlots(e.path());
    } catch (const std::exception& ex) {
      Log(LogSeverity::kError, "update", "slots_unreadable", ex.what());
      continue;
    }
    if (!s || s->trial.empty()) continue;
    std::string version = s->trial;
    std::string reason = "the trial was interrupted (agent stopped or crashed)";
    if (s->trial_attempts >= 2) {
      // Twice interrupted: the new version may be what takes the agent down. Do not retry it.
      s->failed.push_back(version);
      s->last_failure = reason + " twice";
    }
    s->trial.clear();
    WriteSlots(e.path(), *s);  // first: from here on nothing routes to the trial version
    if (version != s->committed && version != s->previous) fs::remove_all(e.path() / version, ec);
    Log(LogSeverity::kWarn, "update", "model_rolled_back",
        fmt::format("model {}: rolled back to {}: {} {}", e.path().filename().string(),
                    s->committed.empty() ? "nothing" : s->committed, version, reason),
        {{"model", e.path().filename().string()}, {"version", version}, {"reason", reason}});
    Record(MakeEvent(e.path().filename().string(), version, "rolled_back", reason));
  }
}

void UpdateService::Start() {
  thread_ = std::thread([this] {
    // The first check comes soon after start, spread over up to a minute so that a fleet
    // powering up together does not arrive at once; then every interval, jittered.
    auto wait = options_.check_on_start
                    ? std::chrono::milliseconds(std::uniform_int_distribution<int64_t>(
                          0, std::min<int64_t>(options_.interval.count(), 60000))(rng_))
                    : NextWait();
    std::unique_lock lock(mu_);
    while (!stop_) {
      next_check_ = tuf::FormatExpiry(std::chrono::system_clock::now() +
                                      std::chrono::duration_cast<std::chrono::seconds>(wait));
      if (cv_.wait_for(lock, wait, [&] { return stop_; })) break;
      lock.unlock();
      RunCheck(/*force=*/false);
      wait = NextWait();
      lock.lock();
    }
  });
}

std::chrono::milliseconds UpdateService::NextWait() {
  double j = std::uniform_real_distribution<double>(-options_.jitter, options_.jitter)(rng_);
  return std::chrono::milliseconds(
      static_cast<int64_t>(static_cast<double>(options_.interval.count()) * (1.0 + j)));
}

void UpdateService::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

json UpdateService::CheckNow(bool force) {
  RunCheck(force);
  return Status();
}

json UpdateService::Reconcile(const std::map<std::string, std::string>& desired) {
  {
    std::lock_guard lock(mu_);
    desired_ = desired;
  }
  RunCheck(/*force=*/false);
  std::lock_guard run(run_mu_);
  return DesiredStatus(desired, last_offers_);
}

// What each desired model's slots say now.
json UpdateService::DesiredStatus(const std::map<std::string, std::string>& desired,
                                  const std::vector<tuf::Offer>& offers) {
  json out = json::object();
  std::string check_error;
  {
    std::lock_guard lock(mu_);
    if (last_result_ != "ok") check_error = last_result_ + ": " + last_error_;
  }
  for (const auto& [name, version] : desired) {
    SlotState state;
    const bool agent = name == "outpostd";  // the agent's own package; its slots are elsewhere
    if (agent && options_.agent_slots.empty()) {
      out[name] = {{"version", options_.agent_version},
                   {"status", version == options_.agent_version ? "installed" : "failed"},
                   {"reason", version == options_.agent_version
                                  ? ""
                                  : "this agent does not run under outpost-supervisor, so it "
                                    "cannot update itself"}};
      continue;
    }
    if (auto s = ReadSlots(agent ? options_.agent_slots / name : options_.model_repository / name))
      state = *s;
    if (agent) state.committed = options_.agent_version;  // the build running now
    if (state.committed.empty()) state.committed = models_.DefaultVersion(name);
    json st = {{"version", state.committed}, {"reason", ""}};
    // Explicit captures: clang before 16 cannot capture structured bindings.
    bool offered = std::any_of(offers.begin(), offers.end(),
                               [&name = name, &version = version](const tuf::Offer& o) {
                                 return o.name == name && o.version == version;
                               });
    if (state.committed == version) {
      st["status"] = "installed";
    } else if (state.HasFailed(version)) {
      st["status"] = "failed";
      st["reason"] = state.last_failure.empty() ? "the update was rolled back" : state.last_failure;
    } else if (options_.policy.pinned_models.count(name)) {
      st["status"] = "failed";
      st["reason"] = "the model is pinned on this device";
    } else if (check_error.empty() && !offered) {
      st["status"] = "failed";
      st["reason"] = name + " " + version + " is not in the update repository";
    } else {
      st["status"] = "installing";
      st["reason"] = check_error;
    }
    out[name] = std::move(st);
  }
  return out;
}

void UpdateService::SetState(const std::string& state) {
  std::lock_guard lock(mu_);
  state_ = state;
}

void UpdateService::RunCheck(bool force) {
  std::lock_guard run(run_mu_);
  auto counter = [&](const std::string& result) -> Counter& {
    return metrics_.GetCounter("outpost_update_checks_total", "Update checks by result.",
                               {{"result", result}});
  };
  {
    std::lock_guard lock(mu_);
    last_check_ = Now();
  }
  if (!force) {
    if (auto why = tuf::PolicyBlocks(options_.policy, std::chrono::system_clock::now(),
                                     HostOf(options_.repository_url))) {
      std::lock_guard lock(mu_);
      last_result_ = "blocked";
      last_error_ = *why;
      PersistStatus();
      counter("blocked").Add();
      Log(LogSeverity::kInfo, "update", "check_skipped", "update check skipped: " + *why);
      return;
    }
  }
  try {
    SetState("checking");
    std::optional<std::map<std::string, std::string>> desired;
    {
      std::lock_guard lock(mu_);
      desired = desired_;
    }
    auto offers = client_->Check(std::chrono::system_clock::now(), desired ? &*desired : nullptr);
    last_offers_ = offers;
    CrashPoint("refreshed");
    for (const auto& offer : offers) {
      if (offer.kind != "model") continue;
      if (options_.policy.pinned_models.count(offer.name)) continue;
      try {
        UpdateModel(offer, desired.has_value());
      } catch (const std::exception& e) {
        // Under a fleet, one model's failure (recorded in its slots) does not stop the others.
        if (!desired) throw;
        Log(LogSeverity::kError, "update", "model_update_failed",
            fmt::format("update: model {} {}: {}", offer.name, offer.version, e.what()),
            {{"model", offer.name}, {"version", offer.version}});
      }
    }
    // The agent last: staging it ends this process (the supervisor starts the trial).
    for (const auto& offer : offers) {
      if (offer.kind == "agent" && offer.name == "outpostd" && !options_.agent_slots.empty())
        StageAgent(offer, desired.has_value());
    }
    std::lock_guard lock(mu_);
    state_ = "idle";
    last_result_ = "ok";
    last_error_.clear();
    PersistStatus();
    counter("ok").Add();
  } catch (const std::exception& e) {
    std::lock_guard lock(mu_);
    state_ = "idle";
    last_result_ = "error";
    last_error_ = e.what();
    PersistStatus();
    counter("error").Add();
    Log(LogSeverity::kError, "update", "check_failed",
        std::string("update check failed: ") + e.what());
  }
}

void UpdateService::UpdateModel(const tuf::Offer& offer, bool directed) {
  fs::path model_dir = options_.model_repository / offer.name;
  SlotState state;
  if (auto s = ReadSlots(model_dir)) state = *s;
  if (state.committed.empty()) state.committed = models_.DefaultVersion(offer.name);
  if (directed ? offer.version == state.committed
               : !state.committed.empty() && CompareVersions(offer.version, state.committed) <= 0)
    return;
  if (state.HasFailed(offer.version)) return;  // reported when it failed; wait for a newer one
  auto started = SteadyClock::now();
  Event ev = MakeEvent(offer.name, offer.version, "", "");
  Log(LogSeverity::kInfo, "update", "model_update_started",
      fmt::format("update: model {} {} -> {}", offer.name,
                  state.committed.empty() ? "(none)" : state.committed, offer.version),
      {{"model", offer.name}, {"version", offer.version}, {"from", state.committed}});

  fs::path package = FetchWithBase(offer, model_dir, ev);

  // A package for a newer agent waits for the agent's own update; it has not failed.
  try {
    PackageManifest m = VerifyPackageFile(package, trust_).manifest;
    if (m.name != offer.name || m.version != offer.version ||
        !IsModelRuntime(m.json.value("runtime", "")))
      Fail(ErrorCode::kPermissionDenied, "the package is " + m.name + " " + m.version +
                                             " (runtime " + m.json.value("runtime", "") +
                                             "), not the model the repository names");
    CheckAgentVersion(m, OUTPOST_VERSION);
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kPermissionDenied) {
      std::error_code ec;
      fs::remove(package, ec);  // signed for the repository but not by a key this device trusts
    }
    ev.outcome = e.code() == ErrorCode::kFailedPrecondition ? "deferred" : "refused";
    ev.reason = e.what();
    Record(ev);
    Log(LogSeverity::kError, "update", "model_update_failed",
        fmt::format("update: model {} {} {}: {}", offer.name, offer.version, ev.outcome, e.what()),
        {{"model", offer.name}, {"version", offer.version}, {"outcome", ev.outcome}});
    if (e.code() == ErrorCode::kFailedPrecondition) return;
    throw;
  }

  // Slot B: whatever is not the committed version makes room for the trial. The record comes
  // first, so that a crash from here on is undone at start-up.
  SetState("installing " + offer.name + " " + offer.version);
  state.trial_attempts = state.trial == offer.version ? state.trial_attempts + 1 : 1;
  state.trial = offer.version;
  state.previous.clear();  // its slot takes the trial
  fs::create_directories(model_dir);
  WriteSlots(model_dir, state);
  CrashPoint("trial-recorded");
  RemoveVersionsExcept(model_dir, {state.committed});
  try {
    InstallPackage(package, options_.model_repository, trust_);
  } catch (const std::exception& e) {
    Rollback(model_dir, state, offer.version, std::string("install failed: ") + e.what());
    ev.outcome = "rolled_back";
    ev.reason = std::string("install failed: ") + e.what();
    Record(ev);
    return;
  }
  CrashPoint("installed");

  SetState("trial " + offer.name + " " + offer.version);
  models_.Want(offer.name);
  models_.Reconcile(/*settle=*/false);  // loads and warms up the trial version
  std::optional<std::string> failure;
  for (const auto& e : models_.Index()) {
    if (e.name == offer.name && e.version == offer.version && e.state != VersionState::kReady)
      failure = "did not load: " + e.reason;
  }
  CrashPoint("loaded");
  if (!failure) failure = Probe(offer.name, offer.version);
  CrashPoint("probed");
  if (!failure) failure = Canary(offer.name, offer.version, state.committed);
  CrashPoint("canary");
  if (failure) {
    Rollback(model_dir, state, offer.version, *failure);
    ev.outcome = "rolled_back";
    ev.reason = *failure;
  } else {
    state.previous = state.committed;
    state.committed = offer.version;
    state.trial.clear();
    state.trial_attempts = 0;
    WriteSlots(model_dir, state);
    CrashPoint("committed");
    // Two slots: the committed version and the one before it (rollback and delta base).
    RemoveVersionsExcept(model_dir, {state.committed, state.previous});
    models_.Reconcile(/*settle=*/false);
    metrics_
        .GetCounter("outpost_update_commits_total", "Updates committed.", {{"model", offer.name}})
        .Add();
    Log(LogSeverity::kInfo, "update", "model_committed",
        fmt::format("update: model {} {} committed", offer.name, offer.version),
        {{"model", offer.name}, {"version", offer.version}});
    ev.outcome = "committed";
  }
  client_->CleanDownloads();
  ev.seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
  Record(ev);
}

// Downloads the offer, as a delta against a version installed under `dir` when one is offered.
fs::path UpdateService::FetchWithBase(const tuf::Offer& offer, const fs::path& dir, Event& ev) {
  SetState("downloading " + offer.name + " " + offer.version);
  tuf::FetchStats stats;
  fs::path package = client_->Fetch(
      offer,
      [&](const std::string& version, const fs::path& out) {
        fs::path base = dir / version;
        if (!IsValidVersionLabel(version) || !fs::exists(base / kInstalledPackageDir)) return false;
        RebuildPackage(base, out);
        return true;
      },
      &stats);
  ev.bytes = stats.bytes_downloaded;
  ev.delta = stats.used_delta;
  metrics_.GetCounter("outpost_update_downloaded_bytes_total", "Bytes fetched for updates.", {})
      .Add(static_cast<double>(stats.bytes_downloaded));
  CrashPoint("downloaded");
  return package;
}

// Hands a new agent build to the supervisor (outpost-supervisor), which alone writes the
// agent's slots: it verifies and installs the package once this process has exited, starts it
// on trial, commits it once it reports healthy, and otherwise restores this build.
void UpdateService::StageAgent(const tuf::Offer& offer, bool directed) {
  SlotState state;
  if (auto s = ReadSlots(options_.agent_slots / offer.name)) state = *s;
  if ((directed ? offer.version == options_.agent_version
                : CompareVersions(offer.version, options_.agent_version) <= 0) ||
      state.HasFailed(offer.version))
    return;
  Event ev = MakeEvent(offer.name, offer.version, "", "");
  fs::path package = FetchWithBase(offer, options_.agent_slots / offer.name, ev);
  PackageManifest m = VerifyPackageFile(package, trust_).manifest;
  if (m.name != offer.name || m.version != offer.version || m.json.value("runtime", "") != "agent")
    Fail(ErrorCode::kPermissionDenied, "the package is " + m.name + " " + m.version +
                                           ", not the agent build the repository names");
  // Whole or not at all: a copy beside the hand-off name, then renamed over it.
  const fs::path handoff = AgentHandoffPackage(options_.agent_slots);
  const fs::path partial = handoff.string() + ".partial";
  std::error_code ec;
  fs::copy_file(package, partial, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::rename(partial, handoff, ec);
  if (ec) {
    fs::remove(partial);
    Fail(ErrorCode::kUnavailable,
         "cannot hand the build to the supervisor at " + handoff.string() + ": " + ec.message());
  }
  client_->CleanDownloads();
  ev.outcome = "staged";
  ev.reason = "restarting into it: the supervisor installs it and commits it once it is healthy";
  Record(ev);
  Log(LogSeverity::kWarn, "update", "agent_staged",
      fmt::format("update: agent {} handed to the supervisor; restarting into it", offer.version),
      {{"version", offer.version}, {"committed", options_.agent_version}});
  ::kill(::getpid(), SIGTERM);  // the main thread's orderly shutdown
}

void UpdateService::Rollback(const fs::path& model_dir, SlotState& state,
                             const std::string& version, const std::string& reason) {
  models_.ClearCanary(model_dir.filename().string());
  state.failed.push_back(version);
  state.last_failure = version + ": " + reason;
  state.trial.clear();
  state.trial_attempts = 0;
  WriteSlots(model_dir, state);  // first: nothing routes to the failed version from here on
  std::error_code ec;
  fs::remove_all(model_dir / version, ec);
  models_.Reconcile(/*settle=*/false);
  metrics_
      .GetCounter("outpost_update_rollbacks_total", "Trials rolled back.",
                  {{"model", model_dir.filename().string()}})
      .Add();
  Log(LogSeverity::kError, "update", "model_rolled_back",
      fmt::format("update: model {} {} rolled back (serving {}): {}", model_dir.filename().string(),
                  version, state.committed.empty() ? "nothing" : state.committed, reason),
      {{"model", model_dir.filename().string()}, {"version", version}, {"reason", reason}});
}

std::optional<std::string> UpdateService::Probe(const std::string& name,
                                                const std::string& version) {
  InferRequest request;
  try {
    if (auto it = options_.probes.find(name); it != options_.probes.end()) {
      request = DecodeHttpInferRequest(it->second.dump(), std::nullopt);
    } else {
      request.inputs = ZeroInputs(models_.Get(name, version)->config);
    }
  } catch (const std::exception& e) {
    return std::string("the probe request is not valid for this version: ") + e.what();
  }
  request.model_name = name;
  request.model_version = version;
  auto start = SteadyClock::now();
  try {
    inference_.Infer(std::move(request), Clock::now() + options_.probe_budget);
  } catch (const std::exception& e) {
    return std::string("probe failed: ") + e.what();
  }
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start);
  if (took > options_.probe_budget)
    return "probe took " + std::to_string(took.count()) + " ms, over the " +
           std::to_string(options_.probe_budget.count()) + " ms budget";
  return std::nullopt;
}

std::optional<std::string> UpdateService::Canary(const std::string& name,
                                                 const std::string& version,
                                                 const std::string& baseline) {
  if (options_.canary.count() <= 0) return std::nullopt;
  Outcomes trial0 = OutcomesOf(metrics_, name, version);
  Outcomes base0 = baseline.empty() ? Outcomes{} : OutcomesOf(metrics_, name, baseline);
  models_.SetCanary(name, version, options_.canary_fraction);
  {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, options_.canary, [&] { return stop_; });
  }
  models_.ClearCanary(name);
  Outcomes trial = OutcomesOf(metrics_, name, version);
  Outcomes base = baseline.empty() ? Outcomes{} : OutcomesOf(metrics_, name, baseline);
  double t_ok = trial.ok - trial0.ok, t_bad = trial.failed - trial0.failed;
  double b_ok = base.ok - base0.ok, b_bad = base.failed - base0.failed;
  double t_rate = t_ok + t_bad > 0 ? t_bad / (t_ok + t_bad) : 0;
  double b_rate = b_ok + b_bad > 0 ? b_bad / (b_ok + b_bad) : 0;
  if (t_bad > 0 && t_rate > b_rate + options_.max_error_rate_increase) {
    char text[160];
    std::snprintf(text, sizeof text,
                  "error rate rose in the canary window: %.0f of %.0f requests failed (%.1f%%), "
                  "%.1f%% on %s",
                  t_bad, t_ok + t_bad, 100 * t_rate, 100 * b_rate,
                  baseline.empty() ? "no baseline" : baseline.c_str());
    return std::string(text);
  }
  return std::nullopt;
}

UpdateService::Event UpdateService::MakeEvent(std::string model, std::string version,
                                              std::string outcome, std::string reason) {
  Event e;
  e.model = std::move(model);
  e.version = std::move(version);
  e.outcome = std::move(outcome);
  e.reason = std::move(reason);
  return e;
}

void UpdateService::Record(Event e) {
  std::lock_guard lock(mu_);
  events_.push_back(std::move(e));
  while (events_.size() > 32) events_.pop_front();
  PersistStatus();
}

json UpdateService::StatusLocked() const {
  json models = json::object();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(options_.model_repository, ec)) {
    try {
      if (auto s = ReadSlots(e.path())) {
        models[e.path().filename().string()] = {{"committed", s->committed},
                                                {"previous", s->previous},
                                                {"trial", s->trial},
                                                {"failed", s->failed},
                                                {"last_failure", s->last_failure}};
      }
    } catch (const std::exception&) {
    }
  }
  json events = json::array();
  for (const auto& e : events_) {
    events.push_back({{"model", e.model},
                      {"version", e.version},
                      {"outcome", e.outcome},
                      {"reason", e.reason},
                      {"bytes_downloaded", e.bytes},
                      {"delta", e.delta},
                      {"seconds", e.seconds}});
  }
  json pinned = json::array();
  for (const auto& p : options_.policy.pinned_models) pinned.push_back(p);
  return {{"enabled", true},           {"repository", options_.repository_url},
          {"state", state_},           {"last_check", last_check_},
          {"next_check", next_check_}, {"last_result", last_result_},
          {"last_error", last_error_}, {"pinned_models", pinned},
          {"models", models},          {"events", events}};
}

json UpdateService::Status() const {
  std::lock_guard lock(mu_);
  return StatusLocked();
}

void UpdateService::PersistStatus() const {
  try {
    WriteFileAtomically(options_.state_dir / "status.json", StatusLocked().dump(2) + "\n");
  } catch (const std::exception& e) {
    Log(LogSeverity::kWarn, "update", "status_not_written",
        std::string("cannot write the update status: ") + e.what());
  }
}

}  // namespace outpost
