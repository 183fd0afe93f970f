#include "serving/agent.h"

#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "package/package.h"
#include "runtime/capabilities.h"
#include "serving/grpc_server.h"
#include "serving/http_server.h"

namespace outpost {

namespace {

template <typename T>
void Take(const nlohmann::json& j, const char* key, T& out) {
  if (!j.contains(key)) return;
  try {
    out = j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    Fail(ErrorCode::kInvalidArgument, std::string("config: '") + key + "' has the wrong type");
  }
}

}  // namespace

void ApplyConfigJson(const nlohmann::json& j, AgentConfig& c) {
  if (!j.is_object()) Fail(ErrorCode::kInvalidArgument, "config: must be a JSON object");
  auto known = ToJson(c);
  for (const auto& [k, v] : j.items()) {
    if (!known.contains(k)) Fail(ErrorCode::kInvalidArgument, "config: unknown key '" + k + "'");
  }
  std::string repo = c.model_repository.string(), trust = c.trust_file.string();
  Take(j, "model_repository", repo);
  Take(j, "trust_file", trust);
  c.model_repository = repo;
  c.trust_file = trust;
  Take(j, "allow_unsigned_models", c.allow_unsigned_models);
  Take(j, "http_address", c.http_address);
  Take(j, "http_port", c.http_port);
  Take(j, "grpc_address", c.grpc_address);
  Take(j, "grpc_port", c.grpc_port);
  Take(j, "metrics_port", c.metrics_port);
  Take(j, "metrics_address", c.metrics_address);
  Take(j, "max_request_bytes", c.max_request_bytes);
  Take(j, "http_threads", c.http_threads);
  Take(j, "repository_poll_secs", c.repository_poll_secs);
  Take(j, "default_timeout_ms", c.default_timeout_ms);
  Take(j, "intra_op_threads", c.intra_op_threads);
  Take(j, "thread_spinning", c.thread_spinning);
  Take(j, "memory_arena", c.memory_arena);
  Take(j, "execution_providers", c.execution_providers);
  Take(j, "log_level", c.log_level);
  Take(j, "log_format", c.log_format);
}

nlohmann::json ToJson(const AgentConfig& c) {
  return {{"model_repository", c.model_repository.string()},
          {"trust_file", c.trust_file.string()},
          {"allow_unsigned_models", c.allow_unsigned_models},
          {"http_address", c.http_address},
          {"http_port", c.http_port},
          {"grpc_address", c.grpc_address},
          {"grpc_port", c.grpc_port},
          {"metrics_port", c.metrics_port},
          {"metrics_address", c.metrics_address},
          {"max_request_bytes", c.max_request_bytes},
          {"http_threads", c.http_threads},
          {"repository_poll_secs", c.repository_poll_secs},
          {"default_timeout_ms", c.default_timeout_ms},
          {"intra_op_threads", c.intra_op_threads},
          {"thread_spinning", c.thread_spinning},
          {"memory_arena", c.memory_arena},
          {"execution_providers", c.execution_providers},
          {"log_level", c.log_level},
          {"log_format", c.log_format}};
}

struct Agent::Parts {
  MetricsRegistry metrics;
  std::unique_ptr<ModelManager> models;
  std::unique_ptr<InferenceService> service;
  std::unique_ptr<HttpServer> http;
  std::unique_ptr<GrpcServer> grpc;
  std::unique_ptr<MetricsServer> metrics_server;
};

Agent::Agent(AgentConfig config) : config_(std::move(config)), parts_(std::make_unique<Parts>()) {
  auto check_port = [](int port, const char* what, int min) {
    if (port < min || port > 65535)
      Fail(ErrorCode::kInvalidArgument,
           std::string(what) + " must be " + std::to_string(min) + "..65535");
  };
  check_port(config_.http_port, "--http-port", 0);
  check_port(config_.grpc_port, "--grpc-port", 0);
  check_port(config_.metrics_port, "--metrics-port", -1);
  if (config_.http_threads < 1 || config_.http_threads > 1024)
    Fail(ErrorCode::kInvalidArgument, "http_threads must be 1..1024");
  if (config_.repository_poll_secs < 0)
    Fail(ErrorCode::kInvalidArgument, "repository_poll_secs must be >= 0");
  if (config_.default_timeout_ms <= 0)
    Fail(ErrorCode::kInvalidArgument, "default_timeout_ms must be > 0");
}

Agent::~Agent() { Stop(); }

BoundPorts Agent::Start() {
  ConfigureOnnxRuntime(config_.intra_op_threads, 1, config_.thread_spinning);
  info_.capabilities = ToJson(DiscoverCapabilities());
  auto& p = *parts_;
  p.metrics.AddCollector(AppendProcessMetrics);
  ManagerOptions mo;
  mo.repository = config_.model_repository;
  mo.runtime.execution_providers = config_.execution_providers;
  mo.runtime.memory_arena = config_.memory_arena;
  if (!config_.trust_file.empty()) trust_ = LoadTrustPolicy(config_.trust_file);
  mo.trust = trust_;
  mo.allow_unsigned = config_.allow_unsigned_models;
  if (mo.allow_unsigned)
    spdlog::warn("development mode: models without a trusted signature are served");
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
  p.models = std::make_unique<ModelManager>(mo, p.metrics);
  p.service = std::make_unique<InferenceService>(
      *p.models, InferenceLimits{std::chrono::milliseconds(config_.default_timeout_ms)});
  p.metrics.AddCollector([models = p.models.get()](std::string& out) {
    out +=
        "# HELP outpost_inference_pending_requests Requests waiting in a model's queue.\n"
        "# TYPE outpost_inference_pending_requests gauge\n";
    models->ForEachServed([&](const ServedModel& m) {
      AppendSample(out, "outpost_inference_pending_requests", RenderLabels(m.metrics.labels),
                   static_cast<double>(m.scheduler->queue_depth()));
    });
  });
  spdlog::info("loading model repository {}", config_.model_repository.string());
  p.models->Start();

  // HTTP opens last: it is what answers /v2/health/ready, so "ready" means every listener is up.
  BoundPorts ports;
  if (config_.grpc_port != 0) {
    p.grpc = std::make_unique<GrpcServer>(
        GrpcOptions{config_.grpc_address, config_.grpc_port, config_.max_request_bytes}, *p.service,
        info_);
    ports.grpc = p.grpc->Start();
    spdlog::info("gRPC (KServe v2) listening on {}:{}", config_.grpc_address, ports.grpc);
  }
  if (config_.metrics_port > 0) {
    p.metrics_server =
        std::make_unique<MetricsServer>(config_.metrics_address, config_.metrics_port, p.metrics);
    ports.metrics = p.metrics_server->Start();
    spdlog::info("metrics listening on {}:{}", config_.metrics_address, ports.metrics);
  }
  HttpOptions ho;
  ho.address = config_.http_address;
  ho.port = config_.http_port;
  ho.max_body_bytes = config_.max_request_bytes;
  ho.threads = config_.http_threads;
  ho.serve_metrics = config_.metrics_port == -1;
  ho.install_package = [this](const std::string& bytes) { return InstallUploadedPackage(bytes); };
  p.http = std::make_unique<HttpServer>(ho, *p.service, p.metrics, info_);
  ports.http = p.http->Start();
  spdlog::info("HTTP (KServe v2) listening on {}:{}", config_.http_address, ports.http);
  if (config_.metrics_port == -1) ports.metrics = ports.http;
  return ports;
}

IndexEntry Agent::InstallUploadedPackage(const std::string& bytes) {
  auto& p = *parts_;
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
    spdlog::info("installed package {} {} from an upload", r.manifest.name, r.manifest.version);
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

void Agent::Stop() {
  if (!parts_) return;
  auto& p = *parts_;
  if (p.http) p.http->Stop();
  if (p.grpc) p.grpc->Stop();
  if (p.metrics_server) p.metrics_server->Stop();
  if (p.models) p.models->Stop();
}

}  // namespace outpost
