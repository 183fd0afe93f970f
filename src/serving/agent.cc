#include "serving/agent.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <sodium.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <set>

#include "auth/authorizer.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/memory_budget.h"
#include "fleet/fleet_client.h"
#include "health/health.h"
#include "health/resources.h"
#include "http/tls_context.h"
#include "llm/redaction.h"
#include "llm/router.h"
#include "monitoring/anomaly.h"
#include "package/package.h"
#include "runtime/capabilities.h"
#include "secrets/secret_store.h"
#include "serving/chat_service.h"
#include "serving/grpc_server.h"
#include "serving/http_server.h"
#include "serving/telemetry_summary.h"
#include "serving/update_service.h"
#include "telemetry/otlp_shipper.h"
#include "telemetry/outbox.h"
#include "telemetry/webhook.h"
#include "tpm/platform_security.h"

namespace outpost {

namespace {

// A webhook body is the event as the log has it, time included.
std::string WebhookBody(const LogEvent& e) {
  nlohmann::json body = e.ToJson();
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
  body["time"] = fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z",
                             fmt::gmtime(std::chrono::system_clock::to_time_t(now)),
                             static_cast<int>(ms.count() % 1000));
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The configured id, else the machine id, else the host name.
std::string DeviceId(const std::string& configured) {
  if (!configured.empty()) return configured;
  try {
    std::string id = ReadFile("/etc/machine-id");
    while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
    if (!id.empty()) return id;
  } catch (const std::exception&) {
  }
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return host;
}

// What callers of a listener bound to `address` may do without a credential.
auth::Scopes OpenScopes(const AgentConfig& c, const std::string& address) {
  if (!auth::IsLoopbackAddress(address) && !c.insecure_open_beyond_loopback) return auth::kNoScopes;
  return auth::ParseScopes(c.auth_open_scopes);
}

// The key that authenticates the repository's ORT-format copies; empty (copies off, said in
// the log) when there is no repository or the key cannot be read or made.
std::string DerivationKey(const AgentConfig& c) {
  std::error_code ec;
  if (!std::filesystem::is_directory(c.model_repository, ec)) return "";
  try {
    return LoadOrCreateDerivationKey(c.model_repository / kDerivationKeyFile);
  } catch (const Error& e) {
    Log(LogSeverity::kWarn, "agent", "ort_format_off",
        fmt::format("models are loaded as ONNX, not kept in ORT format: {}", e.what()),
        {{"reason", e.what()}});
    return "";
  }
}

// A captured request's inputs as the outbox keeps them: raw tensors in base64, text redacted
// element by element (it may carry personal data).
nlohmann::json CapturedTensors(const std::vector<Tensor>& inputs, const Redactor& redactor) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : inputs) {
    nlohmann::json j = {{"name", t.name}, {"datatype", DataTypeName(t.dtype)}, {"shape", t.shape}};
    if (t.dtype == DataType::kBytes) {
      nlohmann::json values = nlohmann::json::array();
      size_t at = 0;
      while (at + 4 <= t.data.size()) {
        uint32_t n;
        std::memcpy(&n, t.data.data() + at, 4);
        at += 4;
        std::string value = t.data.substr(at, n);
        at += n;
        values.push_back(redactor.Redact(value).text);
      }
      j["data"] = values;
    } else {
      std::string b64(sodium_base64_ENCODED_LEN(t.data.size(), sodium_base64_VARIANT_ORIGINAL),
                      '\0');
      sodium_bin2base64(b64.data(), b64.size(),
                        reinterpret_cast<const unsigned char*>(t.data.data()), t.data.size(),
                        sodium_base64_VARIANT_ORIGINAL);
      b64.resize(std::strlen(b64.c_str()));
      j["raw_base64"] = b64;
    }
    tensors.push_back(std::move(j));
  }
  return tensors;
}

}  // namespace

struct Agent::Parts {
  MetricsRegistry metrics;
  std::unique_ptr<auth::ApiKeyStore> keys;
  std::shared_ptr<http::TlsContext> tls;  // HTTP and metrics listeners, when configured
  std::unique_ptr<MemoryBudget> budget;   // what requests hold at once, over HTTP and gRPC
  std::unique_ptr<ModelManager> models;
  std::unique_ptr<InferenceService> service;
  std::unique_ptr<ChatService> chat;
  std::unique_ptr<HttpServer> http;
  std::unique_ptr<GrpcServer> grpc;
  std::unique_ptr<MetricsServer> metrics_server;
  std::unique_ptr<UpdateService> updates;
  std::unique_ptr<fleet::FleetClient> fleet;
  std::atomic<fleet::FleetClient*> fleet_client{nullptr};  // for the shipper's thread
  HealthRegistry health;
  std::unique_ptr<ResourceReader> resources;
  std::unique_ptr<LoadShedder> shedder;
  std::thread resource_thread;
  std::mutex resource_mu;
  std::condition_variable resource_cv;
  bool resource_stop = false;
  ResourceSample last_sample;
  std::string shed_reason;
  std::atomic<bool> shedding{false};  // read on every request: no lock unless it is set
  std::map<std::string, AnomalyDetector> anomalies;  // the resource thread's own
  InferenceService::Totals last_totals;
  std::unique_ptr<SummaryBuilder> summaries;  // the resource thread's own, as next_summary
  std::chrono::steady_clock::time_point next_summary;
  std::unique_ptr<Outbox> outbox;  // telemetry waiting for the link
  std::unique_ptr<OtlpShipper> shipper;
  std::unique_ptr<WebhookSender> webhook;
  Redactor redactor;

  // The resource thread's steps (StartHealth).
  void SampleResources();
  std::map<std::string, double> Figures();
  void WatchAnomalies();

  // An event the operator should hear of from afar: logged, kept in the outbox for the
  // collector (same schema) and, where asked, posted to the monitoring webhook.
  void Emit(const LogEvent& e, const std::string& kind, int priority, bool to_webhook = false) {
    Log(e);
    if (to_webhook && webhook) webhook->Post(WebhookBody(e));
    if (outbox) {
      outbox->Append(kind, priority,
                     e.ToJson().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      if (shipper) shipper->Wake();
    }
  }
};

Agent::Agent(AgentConfig config) : config_(std::move(config)), parts_(std::make_unique<Parts>()) {
  CheckAgentConfig(config_);
  if (config_.max_inflight_bytes == 0) config_.max_inflight_bytes = 2 * config_.max_request_bytes;
}

UpdateOptions Agent::MakeUpdateOptions() const {
  const auto& c = config_;
  UpdateOptions o;
  o.repository_url = c.update_url;
  while (!o.repository_url.empty() && o.repository_url.back() == '/') o.repository_url.pop_back();
  o.root_file = c.update_root;
  o.state_dir = c.update_state_dir.empty() ? c.model_repository / ".updates" : c.update_state_dir;
  o.model_repository = c.model_repository;
  auto ms = [](double secs) {
    return std::chrono::milliseconds(static_cast<int64_t>(secs * 1000));
  };
  o.interval = ms(c.update_interval_secs);
  o.jitter = c.update_jitter;
  o.check_on_start = c.update_check_on_start;
  o.canary = ms(c.update_canary_secs);
  o.canary_fraction = c.update_canary_fraction;
  o.max_error_rate_increase = c.update_max_error_rate_increase;
  o.probe_budget = std::chrono::milliseconds(c.update_probe_budget_ms);
  for (const auto& [name, request] : c.update_probes.items()) o.probes[name] = request;
  for (const auto& w : c.update_windows) o.policy.windows.push_back(tuf::ParseWindow(w));
  o.policy.max_bytes_per_second = c.update_max_bytes_per_second;
  o.policy.metered_interfaces = c.update_metered_interfaces;
  o.policy.pinned_models = {c.update_pinned_models.begin(), c.update_pinned_models.end()};
  // Under outpost-supervisor the agent knows its slots and the version of the build it runs.
  if (const char* slots = std::getenv("OUTPOST_AGENT_SLOTS")) o.agent_slots = slots;
  if (const char* version = std::getenv("OUTPOST_AGENT_SLOT_VERSION")) o.agent_version = version;
  o.http.min_bytes_per_second = static_cast<long>(c.update_min_bytes_per_second);
  o.http.slow_window_s = c.update_slow_window_secs;
  o.http.attempts = c.update_download_attempts;
  return o;
}

Agent::~Agent() { Stop(); }

// The composition root: each step builds one part and wires it to those built before it.
BoundPorts Agent::Start() {
  ConfigureOnnxRuntime(config_.intra_op_threads, 1, config_.thread_spinning);
  info_.capabilities = ToJson(DiscoverCapabilities());
  info_.capabilities["security"] = tpm::ToJson(tpm::ReadPlatformSecurity());
  auto& p = *parts_;
  p.metrics.AddCollector(AppendProcessMetrics);
  p.budget = std::make_unique<MemoryBudget>(config_.max_inflight_bytes);
  ManagerOptions mo = MakeManagerOptions();
  OpenTelemetry(mo);
  p.models = std::make_unique<ModelManager>(mo, p.metrics);
  p.service = std::make_unique<InferenceService>(
      *p.models, InferenceLimits{std::chrono::milliseconds(config_.default_timeout_ms)});
  StartChat();
  AddModelCollectors();
  if (!config_.update_url.empty()) {
    p.updates = std::make_unique<UpdateService>(MakeUpdateOptions(), *p.models, *p.service,
                                                trust_ ? &*trust_ : nullptr, p.metrics);
    p.updates->RecoverInterruptedTrials();  // before the first scan: nothing serves a trial
  }
  Log(LogSeverity::kInfo, "serving", "repository_loading",
      "loading model repository " + config_.model_repository.string());
  p.models->Start();
  StartHealth();
  if (p.shipper) p.shipper->Start();
  const auth::SubjectPolicy subjects = StartAuth();

  // HTTP opens last: it is what answers /v2/health/ready, so "ready" means every listener is up.
  BoundPorts ports;
  if (config_.grpc_port != 0) ports.grpc = StartGrpc(subjects);
  if (config_.metrics_port > 0) ports.metrics = StartMetricsListener(subjects);
  ports.http = StartHttp(subjects);
  if (config_.metrics_port == -1) ports.metrics = ports.http;
  if (p.updates) {
    p.updates->Start();
    Log(LogSeverity::kInfo, "update", "polling",
        fmt::format("updates from {} every {} s (jitter {}%)", config_.update_url,
                    config_.update_interval_secs, config_.update_jitter * 100));
  }
  if (!config_.fleet_url.empty()) StartFleetClient();
  return ports;
}

ManagerOptions Agent::MakeManagerOptions() {
  auto& p = *parts_;
  ManagerOptions mo;
  mo.repository = config_.model_repository;
  mo.runtime.execution_providers = config_.execution_providers;
  mo.runtime.memory_arena = config_.memory_arena;
  if (config_.ort_format_models) mo.runtime.ort_format.key = DerivationKey(config_);
  if (!config_.trust_file.empty()) trust_ = LoadTrustPolicy(config_.trust_file);
  mo.trust = trust_;
  mo.allow_unsigned = config_.allow_unsigned_models;
  if (mo.allow_unsigned)
    Log(LogSeverity::kWarn, "agent", "development_mode",
        "development mode: models without a trusted signature are served");
  info_.unsigned_models_allowed = mo.allow_unsigned;
  p.metrics.AddCollector([allowed = mo.allow_unsigned](std::string& out) {
    out +=
        "# HELP outpost_unsigned_models_allowed 1 when the agent runs in development mode and "
        "serves unsigned "
        "models.\n# TYPE outpost_unsigned_models_allowed gauge\n";
    AppendSample(out, "outpost_unsigned_models_allowed", "", allowed ? 1 : 0);
  });
  mo.poll_interval =
      std::chrono::milliseconds(static_cast<int64_t>(config_.repository_poll_secs * 1000));
  mo.control = ParseModelControl(config_.model_control_mode);
  if (mo.control == ModelControl::kNone) mo.poll_interval = std::chrono::milliseconds(0);
  mo.startup_models = config_.load_model;
  mo.memory_budget_bytes = static_cast<uint64_t>(config_.memory_budget_mb * 1048576.0);
  mo.on_drift = [&p](const DriftEvent& e) {
    p.metrics
        .GetCounter(
            "outpost_model_drift_events_total", "Drift tests past their threshold.",
            {{"model", e.model}, {"version", e.version}, {"tensor", e.tensor}, {"test", e.test}})
        .Add();
    p.Emit({LogSeverity::kWarn,
            "monitoring",
            "drift",
            fmt::format("drift detected in {}/{} {}: {} {:.4g} past {:.4g}", e.model, e.version,
                        e.tensor, e.test, e.statistic, e.threshold),
            {{"model", e.model},
             {"version", e.version},
             {"tensor", e.tensor},
             {"test", e.test},
             {"statistic", e.statistic},
             {"threshold", e.threshold},
             {"window", e.window},
             {"evidence", e.evidence}}},
           "drift", /*priority=*/1, /*to_webhook=*/true);
  };
  return mo;
}

// Telemetry goes to the configured collector, or else to the fleet server the device follows
// (signed with the device's key, through the fleet client); captures after drift go with it.
void Agent::OpenTelemetry(ManagerOptions& mo) {
  auto& p = *parts_;
  if (!config_.telemetry_otlp_url.empty() || !config_.fleet_url.empty()) {
    std::filesystem::path dir = config_.telemetry_dir.empty()
                                    ? config_.model_repository / ".telemetry"
                                    : config_.telemetry_dir;
    p.outbox = std::make_unique<Outbox>(dir / "outbox.db", config_.telemetry_max_bytes);
    ShipperOptions so;
    so.endpoint = config_.telemetry_otlp_url;
    so.device_id = DeviceId(config_.device_id);
    if (config_.telemetry_otlp_url.empty()) {
      so.endpoint = config_.fleet_url + "/api/v1/device/telemetry";
      so.send = [&p](const std::string& body, const std::string& batch_id, std::string* answer) {
        fleet::FleetClient* fleet = p.fleet_client.load();
        if (!fleet) {
          *answer = "the fleet client has not started";
          return 0L;
        }
        return fleet->PostSigned("/api/v1/device/telemetry/v1/logs", body,
                                 {"Idempotency-Key: " + batch_id}, answer);
      };
    }
    p.shipper = std::make_unique<OtlpShipper>(*p.outbox, so);
    p.metrics.AddCollector([outbox = p.outbox.get()](std::string& out) {
      auto st = outbox->Stats();
      out +=
          "# HELP outpost_telemetry_outbox_items Telemetry items waiting to be shipped.\n"
          "# TYPE outpost_telemetry_outbox_items gauge\n";
      AppendSample(out, "outpost_telemetry_outbox_items", "", static_cast<double>(st.items));
      out +=
          "# HELP outpost_telemetry_dropped_total Telemetry items dropped, by reason.\n"
          "# TYPE outpost_telemetry_dropped_total counter\n";
      for (const auto& [reason, n] : st.dropped)
        AppendSample(out, "outpost_telemetry_dropped_total", RenderLabels({{"reason", reason}}),
                     static_cast<double>(n));
      out +=
          "# HELP outpost_telemetry_shipped_items_total Telemetry items delivered.\n"
          "# TYPE outpost_telemetry_shipped_items_total counter\n";
      AppendSample(out, "outpost_telemetry_shipped_items_total", "",
                   static_cast<double>(st.shipped_items));
    });
  }
  if (!config_.monitoring_webhook_url.empty())
    p.webhook = std::make_unique<WebhookSender>(config_.monitoring_webhook_url);
  if (config_.monitoring_captures_allowed && p.outbox) {
    mo.on_capture = [&p](const std::string& model, const std::string& version,
                         const std::vector<Tensor>& inputs) {
      p.Emit({LogSeverity::kInfo,
              "monitoring",
              "capture",
              "input capture after drift in " + model + "/" + version,
              {{"model", model},
               {"version", version},
               {"tensors", CapturedTensors(inputs, p.redactor).dump()}}},
             "capture", 0);
    };
  }
}

void Agent::StartChat() {
  auto& p = *parts_;
  RouterConfig router = ParseRouterConfig(config_.chat_router, config_.chat_cloud);
  if (router.state_dir.empty()) router.state_dir = config_.model_repository / ".chat";
  std::string api_key;
  if (router.cloud_enabled() && !router.cloud.api_key_secret.empty()) {
    // Read once at start; the key lives in this process's memory only.
    api_key = SecretStore(config_.secrets_dir).Get(router.cloud.api_key_secret).reveal();
  }
  if (router.cloud_enabled())
    Log(LogSeverity::kInfo, "router", "cloud_configured",
        fmt::format("chat router: cloud model {} at {} (key: {})", router.cloud.model,
                    router.cloud.url, api_key.empty() ? "none" : "from the secret store"));
  p.chat =
      std::make_unique<ChatService>(*p.models, p.metrics, std::move(router), std::move(api_key));
}

// Per-model gauges: queue depth, attributed memory, where each model runs.
void Agent::AddModelCollectors() {
  auto& p = *parts_;
  p.metrics.AddCollector([models = p.models.get(),
                          budget = static_cast<double>(config_.memory_budget_mb) *
                                   1048576.0](std::string& out) {
    if (budget > 0) {
      out +=
          "# HELP outpost_model_memory_budget_bytes Resident bytes all loaded models may hold.\n"
          "# TYPE outpost_model_memory_budget_bytes gauge\n";
      AppendSample(out, "outpost_model_memory_budget_bytes", "", budget);
    }
    out +=
        "# HELP outpost_inference_pending_requests Requests waiting in a model's queue.\n"
        "# TYPE outpost_inference_pending_requests gauge\n";
    models->ForEachServed([&](const ServedModel& m) {
      if (!m.scheduler) return;
      AppendSample(out, "outpost_inference_pending_requests", RenderLabels(m.metrics.labels),
                   static_cast<double>(m.scheduler->queue_depth()));
    });
    out +=
        "# HELP outpost_model_memory_bytes Resident bytes attributed to a model version at load.\n"
        "# TYPE outpost_model_memory_bytes gauge\n";
    models->ForEachServed([&](const ServedModel& m) {
      AppendSample(out, "outpost_model_memory_bytes", RenderLabels(m.metrics.labels),
                   static_cast<double>(m.memory_bytes));
    });
    out +=
        "# HELP outpost_model_execution_provider Where a model runs (1), and the preferred "
        "providers it fell back from.\n"
        "# TYPE outpost_model_execution_provider gauge\n";
    models->ForEachServed([&](const ServedModel& m) {
      const Placement& placed = m.config.placement;
      if (placed.provider.empty()) return;
      Labels labels = m.metrics.labels;
      std::string fell_back;
      for (const auto& [provider, why] : placed.skipped)
        fell_back += (fell_back.empty() ? "" : ",") + provider;
      labels.push_back({"provider", placed.provider});
      labels.push_back({"fell_back_from", fell_back});
      AppendSample(out, "outpost_model_execution_provider", RenderLabels(labels), 1);
    });
  });
}

// TLS for the listeners, the API key store and the console's admin key; returns the policy
// for client certificates' subjects.
auth::SubjectPolicy Agent::StartAuth() {
  auto& p = *parts_;
  if (!config_.tls_cert_file.empty())
    p.tls = std::make_shared<http::TlsContext>(http::TlsFiles{
        config_.tls_cert_file, config_.tls_key_file, config_.tls_client_ca_file,
        std::chrono::milliseconds(static_cast<int64_t>(config_.tls_reload_secs) * 1000)});
  p.keys = std::make_unique<auth::ApiKeyStore>(config_.auth_dir);
  const auto admin_key = p.keys->EnsureLocalAdminKey();
  Log(LogSeverity::kInfo, "auth", "local_key",
      "API keys in " + config_.auth_dir.string() + "; the console's admin key is " +
          admin_key.string(),
      {{"auth_dir", config_.auth_dir.string()}});
  if (config_.insecure_open_beyond_loopback || config_.insecure_plaintext_beyond_loopback)
    Log(LogSeverity::kWarn, "auth", "insecure",
        std::string("INSECURE:") +
            (config_.insecure_open_beyond_loopback
                 ? " listeners beyond loopback serve the open scopes without a credential;"
                 : "") +
            (config_.insecure_plaintext_beyond_loopback
                 ? " listeners beyond loopback may carry credentials in clear"
                 : ""));
  return auth::ParseSubjectPolicy(config_.tls_client_subjects);
}

int Agent::StartGrpc(const auth::SubjectPolicy& subjects) {
  auto& p = *parts_;
  GrpcOptions go;
  go.address = config_.grpc_address;
  go.port = config_.grpc_port;
  go.max_message_bytes = config_.max_request_bytes;
  go.max_concurrent_streams = config_.grpc_max_concurrent_streams;
  go.max_inflight_bytes = config_.max_inflight_bytes;
  go.budget = p.budget.get();
  go.keys = p.keys.get();
  go.open_scopes = OpenScopes(config_, config_.grpc_address);
  go.model_control = [this](const std::string& model, bool load, const std::string& caller) {
    return ControlModel(model, load, caller);
  };
  go.tls_cert_file = config_.tls_cert_file.string();
  go.tls_key_file = config_.tls_key_file.string();
  go.tls_client_ca_file = config_.tls_client_ca_file.string();
  go.tls_reload_secs = static_cast<unsigned>(config_.tls_reload_secs);
  go.tls_client_subjects = subjects;
  p.grpc = std::make_unique<GrpcServer>(go, *p.service, info_);
  const int port = p.grpc->Start();
  Log(LogSeverity::kInfo, "serving", "listening",
      fmt::format("gRPC (KServe v2) listening on {}:{}{}", config_.grpc_address, port,
                  config_.tls_cert_file.empty()        ? ""
                  : config_.tls_client_ca_file.empty() ? " (TLS)"
                                                       : " (TLS, client certificates)"),
      {{"protocol", "grpc"}, {"address", config_.grpc_address}, {"port", port}});
  return port;
}

int Agent::StartMetricsListener(const auth::SubjectPolicy& subjects) {
  auto& p = *parts_;
  p.metrics_server = std::make_unique<MetricsServer>(
      config_.metrics_address, config_.metrics_port, p.metrics,
      http::BrowserPolicy{config_.http_allowed_hosts, config_.http_cors_origins}, p.keys.get(),
      OpenScopes(config_, config_.metrics_address), p.tls, subjects);
  const int port = p.metrics_server->Start();
  Log(LogSeverity::kInfo, "serving", "listening",
      fmt::format("metrics listening on {}:{}", config_.metrics_address, port),
      {{"protocol", "metrics"}, {"address", config_.metrics_address}, {"port", port}});
  return port;
}

int Agent::StartHttp(const auth::SubjectPolicy& subjects) {
  auto& p = *parts_;
  HttpOptions ho;
  ho.address = config_.http_address;
  ho.port = config_.http_port;
  ho.max_body_bytes = config_.max_request_bytes;
  ho.limits.worker_threads = config_.http_threads;
  ho.limits.max_connections = static_cast<size_t>(config_.http_max_connections);
  ho.limits.max_inflight_bytes = config_.max_inflight_bytes;
  ho.limits.budget = p.budget.get();
  ho.browser = {config_.http_allowed_hosts, config_.http_cors_origins};
  ho.keys = p.keys.get();
  ho.open_scopes = OpenScopes(config_, config_.http_address);
  ho.unix_socket = config_.unix_socket.string();
  ho.tls = p.tls;
  ho.tls_client_subjects = subjects;
  ho.unix_peers = auth::ParsePeerPolicy(config_.unix_socket_peers);
  ho.serve_metrics = config_.metrics_port == -1;
  ho.chat = p.chat.get();
  ho.health = [this] { return Health(); };
  ho.monitoring_status = [models = p.models.get()] {
    nlohmann::json out = nlohmann::json::array();
    models->ForEachServed([&](const ServedModel& m) {
      if (m.monitor)
        out.push_back({{"model", m.config.name},
                       {"version", m.config.version},
                       {"tensors", m.monitor->Status()}});
    });
    return out;
  };
  ho.model_control = [this](const std::string& model, bool load, const std::string& caller) {
    return ControlModel(model, load, caller);
  };
  ho.install_package = [this](const std::string& bytes, const std::string& caller) {
    return InstallUploadedPackage(bytes, caller);
  };
  if (p.updates) {
    ho.update_status = [u = p.updates.get()] { return u->Status(); };
    ho.update_check = [this, u = p.updates.get()](bool force, const std::string& caller) {
      // A forced check overrides the device's windows and metered links, not the fleet's
      // choice of versions; still, on a managed device it is the fleet's to order.
      if (force) CheckLocalChange("a forced update check");
      nlohmann::json out = u->CheckNow(force);
      if (force) ReportLocalChange("a forced update check", caller);
      return out;
    };
  }
  p.http = std::make_unique<HttpServer>(ho, *p.service, p.metrics, info_);
  p.metrics.AddCollector([http = p.http.get()](std::string& out) { http->AppendMetrics(out); });
  const int port = p.http->Start();
  Log(LogSeverity::kInfo, "serving", "listening",
      fmt::format("HTTP (KServe v2) listening on {}:{}", config_.http_address, port),
      {{"protocol", "http"}, {"address", config_.http_address}, {"port", port}});
  if (!config_.unix_socket.empty())
    Log(LogSeverity::kInfo, "serving", "listening",
        "HTTP also on the Unix socket " + config_.unix_socket.string(),
        {{"protocol", "http"}, {"unix_socket", config_.unix_socket.string()}});
  return port;
}

void Agent::StartFleetClient() {
  auto& p = *parts_;
  fleet::FleetClientOptions fo;
  fo.url = config_.fleet_url;
  fo.state_dir = config_.fleet_state_dir.empty() ? config_.model_repository / ".fleet"
                                                 : config_.fleet_state_dir;
  fo.enrollment_token = config_.fleet_enrollment_token;
  fo.poll = std::chrono::milliseconds(static_cast<int64_t>(config_.fleet_poll_secs * 1000));
  // Under outpost-supervisor, the slot's version is this build's release.
  const char* slot_version = std::getenv("OUTPOST_AGENT_SLOT_VERSION");
  fo.agent_version = slot_version && *slot_version ? slot_version : OUTPOST_VERSION;
  fo.capabilities = ToJson(DiscoverCapabilities());
  fo.capabilities["security"] = info_.capabilities["security"];
  fleet::FleetHooks hooks;
  hooks.reconcile = [u = p.updates.get()](const std::map<std::string, std::string>& desired) {
    return u->Reconcile(desired);
  };
  // Health as the rollout controller judges it: readiness, and the error rate and mean latency
  // of inferences since the last report.
  hooks.health = [this, &p, last = p.service->totals()]() mutable {
    nlohmann::json h = Health();
    nlohmann::json out = {{"ready", h.value("ready", false)}};
    auto t = p.service->totals();
    if (uint64_t n = t.requests - last.requests; n > 0) {
      uint64_t failed = t.failures - last.failures;
      out["error_rate"] = static_cast<double>(failed) / static_cast<double>(n);
      if (n > failed)
        out["latency_ms"] = static_cast<double>(t.latency_ns - last.latency_ns) / 1e6 /
                            static_cast<double>(n - failed);
      out["inferences"] = n;
    }
    last = t;
    const nlohmann::json components = h.value("components", nlohmann::json::object());
    for (const auto& [name, c] : components.items()) out["components"][name] = c.value("state", "");
    return out;
  };
  hooks.models = [models = p.models.get()] {
    std::set<std::string> names;  // DefaultVersion takes the lock ForEachServed holds
    models->ForEachServed([&](const ServedModel& m) { names.insert(m.config.name); });
    nlohmann::json out = nlohmann::json::object();
    for (const auto& name : names) out[name] = models->DefaultVersion(name);
    return out;
  };
  p.fleet = std::make_unique<fleet::FleetClient>(std::move(fo), std::move(hooks));
  p.fleet_client = p.fleet.get();
  p.fleet->Start();
  Log(LogSeverity::kInfo, "agent", "fleet",
      fmt::format("following the fleet server at {} (poll every {} s)", config_.fleet_url,
                  config_.fleet_poll_secs));
}

void Agent::CheckLocalChange(const std::string& what) const {
  if (config_.fleet_url.empty() || config_.fleet_allow_local_install) return;
  Fail(ErrorCode::kPermissionDenied,
       "this device is managed by its fleet (" + config_.fleet_url + "): " + what +
           " is refused here; the fleet's desired state says what is installed (set "
           "fleet_allow_local_install to allow it; each one is reported to the fleet)");
}

void Agent::ReportLocalChange(const std::string& what, const std::string& caller,
                              nlohmann::json fields) {
  if (config_.fleet_url.empty()) return;
  fields["caller"] = caller;
  fields["change"] = what;
  parts_->Emit({LogSeverity::kWarn, "fleet", "local_change",
                what + " was made at the device (by " + caller + "), not by the fleet", fields},
               "local_change", /*priority=*/1);
}

std::vector<IndexEntry> Agent::ControlModel(const std::string& model, bool load,
                                            const std::string& caller) {
  auto& models = *parts_->models;
  std::vector<IndexEntry> entries;
  if (load)
    entries = models.LoadOnRequest(model);
  else
    models.UnloadOnRequest(model);
  Log(LogSeverity::kInfo, "serving", load ? "model_loaded_on_request" : "model_unloaded_on_request",
      fmt::format("model {} {} on request (by {})", model, load ? "loaded" : "unloaded", caller),
      {{"model", model}, {"caller", caller}});
  ReportLocalChange(load ? "a model load" : "a model unload", caller, {{"model", model}});
  return entries;
}

IndexEntry Agent::InstallUploadedPackage(const std::string& bytes, const std::string& caller) {
  auto& p = *parts_;
  CheckLocalChange("a package upload");
  if (!trust_ && !config_.allow_unsigned_models) {
    Fail(ErrorCode::kPermissionDenied,
         "the agent has no trust file (--trust-file): it cannot accept packages");
  }
  // A hidden file in the repository: the scanner ignores it, and it is on the same filesystem.
  std::string tmpl = (config_.model_repository / ".incoming-XXXXXX").string();
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0)
    Fail(ErrorCode::kInternal, "cannot create a file in " + config_.model_repository.string());
  ::close(fd);
  std::filesystem::path incoming = tmpl;
  try {
    WriteFileAtomically(incoming, bytes);
    CheckAgentVersion(VerifyPackageFile(incoming, nullptr).manifest, OUTPOST_VERSION);
    // Development mode accepts unsigned packages; with a trust file, signed ones must verify.
    PackageReport r = InstallPackage(incoming, config_.model_repository,
                                     trust_ && !config_.allow_unsigned_models ? &*trust_ : nullptr);
    std::filesystem::remove(incoming);
    Log(LogSeverity::kInfo, "update", "package_uploaded",
        fmt::format("installed package {} {} from an upload", r.manifest.name, r.manifest.version),
        {{"model", r.manifest.name}, {"version", r.manifest.version}});
    ReportLocalChange("a package upload", caller,
                      {{"model", r.manifest.name}, {"version", r.manifest.version}});
    p.models->Want(r.manifest.name);
    p.models->Reconcile(/*settle=*/false);
    for (const auto& e : p.models->Index()) {
      if (e.name == r.manifest.name && e.version == r.manifest.version) return e;
    }
    return {r.manifest.name, r.manifest.version, VersionState::kLoading, ""};
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(incoming, ec);
    throw;
  }
}

void Agent::StartHealth() {
  auto& p = *parts_;
  const auto& h = config_.health;
  for (const auto& [k, v] : h.items())
    if (k != "proc_root" && k != "sys_root" && k != "poll_secs" &&
        k != "min_memory_available_fraction" && k != "max_temperature_c" &&
        k != "min_disk_free_bytes")
      Fail(ErrorCode::kInvalidArgument, "config: unknown key 'health." + k + "'");
  SheddingLimits limits;
  limits.min_memory_available_fraction =
      h.value("min_memory_available_fraction", limits.min_memory_available_fraction);
  limits.max_temperature_c = h.value("max_temperature_c", limits.max_temperature_c);
  limits.min_disk_free_bytes = h.value("min_disk_free_bytes", limits.min_disk_free_bytes);
  const double poll = h.value("poll_secs", 5.0);
  p.resources = std::make_unique<ResourceReader>(
      h.value("proc_root", "/proc"), h.value("sys_root", "/sys"), config_.model_repository);
  p.shedder = std::make_unique<LoadShedder>(limits);
  p.summaries = std::make_unique<SummaryBuilder>(config_.telemetry_noise_epsilon);
  p.next_summary = std::chrono::steady_clock::now() + SummaryInterval();
  p.SampleResources();
  p.resource_thread = std::thread([this, &p, poll] {
    for (;;) {
      std::unique_lock lock(p.resource_mu);
      if (p.resource_cv.wait_for(lock, std::chrono::duration<double>(poll),
                                 [&] { return p.resource_stop; }))
        return;
      lock.unlock();
      p.SampleResources();
      p.WatchAnomalies();
      SummarizeTelemetry();
    }
  });
  auto shed = [&p] {
    if (!p.shedding.load(std::memory_order_relaxed)) return std::string();
    std::lock_guard lock(p.resource_mu);
    return p.shed_reason;
  };
  p.service->SetShedding(shed);
  p.chat->SetShedding(shed);
  p.metrics.AddCollector([&p](std::string& out) {
    out +=
        "# HELP outpost_anomaly_active 1 while a figure is outside its baseline.\n"
        "# TYPE outpost_anomaly_active gauge\n";
    std::lock_guard lock(p.resource_mu);
    for (const auto& [name, d] : p.anomalies)
      AppendSample(out, "outpost_anomaly_active", RenderLabels({{"figure", name}}),
                   d.anomalous() ? 1 : 0);
  });
  p.metrics.AddCollector([&p](std::string& out) {
    ResourceSample s;
    bool shedding;
    {
      std::lock_guard lock(p.resource_mu);
      s = p.last_sample;
      shedding = !p.shed_reason.empty();
    }
    auto gauge = [&](const char* name, const char* help, double v) {
      out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n";
      AppendSample(out, name, "", v);
    };
    gauge("outpost_device_cpu_busy_ratio", "CPU busy since the previous sample (0..1).",
          s.cpu_busy);
    gauge("outpost_device_memory_available_bytes", "Memory available.",
          static_cast<double>(s.memory_available));
    gauge("outpost_device_disk_free_bytes", "Free space on the model repository's file system.",
          static_cast<double>(s.disk_free));
    if (s.temperature_c)
      gauge("outpost_device_temperature_celsius", "Hottest thermal zone.", *s.temperature_c);
    gauge("outpost_device_throttled", "1 while a CPU is throttled for heat.", s.throttled ? 1 : 0);
    gauge("outpost_load_shedding", "1 while new requests are refused to protect the device.",
          shedding ? 1 : 0);
  });
  RegisterHealthChecks();
}

void Agent::RegisterHealthChecks() {
  auto& p = *parts_;
  p.health.Register("runtime", true, [] {
    return ComponentHealth{HealthState::kOk, "ONNX Runtime " + OnnxRuntimeVersion()};
  });
  p.health.Register("models", true, [&p] {
    int ready = 0, failed = 0;
    for (const auto& e : p.models->Index()) {
      ready += e.state == VersionState::kReady;
      failed += e.state == VersionState::kUnavailable;
    }
    if (!p.models->IsReady())
      return ComponentHealth{HealthState::kFailed, "the repository is still loading"};
    std::string detail =
        std::to_string(ready) + " ready, " + std::to_string(failed) + " not loaded";
    return ComponentHealth{failed ? HealthState::kDegraded : HealthState::kOk, detail};
  });
  p.health.Register("resources", true, [&p] {
    std::lock_guard lock(p.resource_mu);
    if (!p.shed_reason.empty())
      return ComponentHealth{HealthState::kFailed, "shedding load: " + p.shed_reason};
    if (p.last_sample.throttled)
      return ComponentHealth{HealthState::kDegraded, "CPU throttled for heat"};
    return ComponentHealth{HealthState::kOk, ""};
  });
  p.health.Register("storage", false, [this, &p] {
    if (::access(config_.model_repository.c_str(), R_OK) != 0)
      return ComponentHealth{HealthState::kFailed, "the model repository is not readable"};
    if (p.outbox) {
      auto st = p.outbox->Stats();
      uint64_t dropped = 0;
      for (const auto& [k, n] : st.dropped) dropped += n;
      if (dropped)
        return ComponentHealth{HealthState::kDegraded,
                               "telemetry outbox dropped " + std::to_string(dropped) + " items"};
    }
    return ComponentHealth{HealthState::kOk, ""};
  });
  p.health.Register("update_client", false, [&p] {
    if (!p.updates) return ComponentHealth{HealthState::kOk, "off"};
    auto s = p.updates->Status();
    std::string err = s.value("last_error", "");
    if (!err.empty()) return ComponentHealth{HealthState::kDegraded, err};
    return ComponentHealth{HealthState::kOk, s.value("last_result", "")};
  });
  p.health.Register("cloud_link", false, [&p] {
    std::string state = p.chat->CloudLinkState();
    if (state.empty()) return ComponentHealth{HealthState::kOk, "not configured"};
    return ComponentHealth{state == "closed" ? HealthState::kOk : HealthState::kDegraded,
                           "circuit " + state};
  });
  p.health.Register("clock", false, ClockHealth);
}

std::chrono::steady_clock::duration Agent::SummaryInterval() const {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(config_.telemetry_summary_secs));
}

// A summary of the interval's traffic and resources into the outbox, every
// telemetry_summary_secs.
void Agent::SummarizeTelemetry() {
  auto& p = *parts_;
  if (!p.outbox || config_.telemetry_summary_secs <= 0) return;
  auto now = std::chrono::steady_clock::now();
  if (now < p.next_summary) return;
  p.next_summary = now + SummaryInterval();
  nlohmann::json resources;
  {
    std::lock_guard lock(p.resource_mu);
    resources = ToJson(p.last_sample);
  }
  auto attributes = p.summaries->Next(*p.models, p.service->totals().failures, resources);
  LogEvent summary{LogSeverity::kDebug, "telemetry", "summary", "telemetry summary",
                   std::move(attributes)};
  Log(summary);
  p.outbox->Append("summary", 0, summary.ToJson().dump());
  if (p.shipper) p.shipper->Wake();
}

// Reads the device's resources and turns load shedding on or off, saying so when it changes.
void Agent::Parts::SampleResources() {
  ResourceSample s = resources->Read();
  std::string reason = shedder->Update(s);
  std::string before;
  {
    std::lock_guard lock(resource_mu);
    before = shed_reason;
    last_sample = s;
    shed_reason = reason;
    shedding.store(!reason.empty(), std::memory_order_relaxed);
  }
  if (before != reason) {
    if (reason.empty())
      Emit({LogSeverity::kWarn,
            "health",
            "load_shedding_off",
            "load shedding off: resources are back within their limits",
            {{"shedding", false}}},
           "health", 1);
    else
      Emit({LogSeverity::kError,
            "health",
            "load_shedding_on",
            "load shedding on: " + reason + "; new requests are refused until it passes",
            {{"shedding", true}, {"reason", reason}}},
           "health", 1);
  }
}

// The device's own figures for the anomaly detectors, per sampling interval.
std::map<std::string, double> Agent::Parts::Figures() {
  std::map<std::string, double> f;
  ResourceSample s;
  {
    std::lock_guard lock(resource_mu);
    s = last_sample;
  }
  if (s.temperature_c) f["temperature_c"] = *s.temperature_c;
  auto t = service->totals();
  const uint64_t n = t.requests - last_totals.requests;
  if (n > 0) {
    f["latency_ms"] = static_cast<double>(t.latency_ns - last_totals.latency_ns) / 1e6 /
                      static_cast<double>(n - (t.failures - last_totals.failures) + 1e-9);
    f["error_rate"] =
        static_cast<double>(t.failures - last_totals.failures) / static_cast<double>(n);
  }
  last_totals = t;
  double queued = 0;
  models->ForEachServed([&](const ServedModel& m) {
    if (m.scheduler) queued += static_cast<double>(m.scheduler->queue_depth());
  });
  f["queue_depth"] = queued;
  return f;
}

void Agent::Parts::WatchAnomalies() {
  std::vector<std::tuple<std::string, double, AnomalyVerdict>> changes;
  auto values = Figures();
  {
    std::lock_guard lock(resource_mu);
    for (const auto& [name, value] : values) {
      // Floors in each figure's own units, so that an idle device's zeros do not make one
      // queued request or one error an anomaly.
      AnomalyOptions o;
      if (name == "temperature_c") o.min_scale = 0.5;
      if (name == "latency_ms") o.min_scale = 0.05, o.relative_floor = 0.1;
      if (name == "error_rate") o.min_scale = 0.02;
      if (name == "queue_depth") o.min_scale = 2;
      auto v = anomalies.try_emplace(name, o).first->second.Add(value);
      if (v.change != AnomalyVerdict::Change::kNone) changes.emplace_back(name, value, v);
    }
  }
  for (const auto& [name, value, v] : changes) {
    const bool started = v.change == AnomalyVerdict::Change::kStarted;
    if (started) {
      metrics
          .GetCounter("outpost_anomaly_events_total",
                      "The device's own figures leaving their robust baseline.", {{"figure", name}})
          .Add();
    }
    Emit({started ? LogSeverity::kWarn : LogSeverity::kInfo,
          "health",
          started ? "anomaly" : "anomaly_over",
          fmt::format("{} {}: {:.4g} (baseline median {:.4g}, z {:.1f})",
                      started ? "anomaly in" : "anomaly over in", name, value, v.median, v.z),
          {{"figure", name},
           {"value", value},
           {"median", v.median},
           {"z", v.z},
           {"started", started}}},
         "anomaly", 1);
  }
}

nlohmann::json Agent::Health() {
  auto& p = *parts_;
  auto report = p.health.Report();
  std::lock_guard lock(p.resource_mu);
  report["resources"] = ToJson(p.last_sample);
  return report;
}

void Agent::Stop() {
  if (!parts_) return;
  auto& p = *parts_;
  if (p.shipper) p.shipper->Stop();  // it may be sending through the fleet client
  if (p.fleet) p.fleet->Stop();
  if (p.updates) p.updates->Stop();
  {
    std::lock_guard lock(p.resource_mu);
    p.resource_stop = true;
  }
  p.resource_cv.notify_all();
  if (p.resource_thread.joinable()) p.resource_thread.join();
  if (p.http) p.http->Stop();
  if (p.grpc) p.grpc->Stop();
  if (p.metrics_server) p.metrics_server->Stop();
  if (p.models) p.models->Stop();
}

}  // namespace outpost
