#include "serving/agent_config.h"

#include "auth/authorizer.h"
#include "core/error.h"
#include "llm/router.h"
#include "update/policy.h"

namespace outpost {

const ConfigSchema<AgentConfig>& AgentConfigSchema() {
  using C = AgentConfig;
  using O = ConfigSchema<AgentConfig>::Options;
  static const ConfigSchema<AgentConfig> schema = [] {
    ConfigSchema<AgentConfig> s;
    // Models and who may sign them.
    s.Add("model_repository", &C::model_repository, "Model repository directory");
    s.Add("trust_file", &C::trust_file,
          "Trust file: keys whose signatures make a model package loadable");
    s.Add("allow_unsigned_models", &C::allow_unsigned_models,
          "Development mode: also serve model directories no trusted signature covers");
    s.Add("repository_poll_secs", &C::repository_poll_secs,
          "Seconds between repository scans (0: no watching)", O{.min = 0});
    s.Add("model_control_mode", &C::model_control_mode,
          "none: load the repository once; poll: also watch it; explicit: load only --load-model "
          "models and those loaded through POST /v2/repository/models/NAME/load",
          O{.one_of = {"none", "poll", "explicit"}});
    s.Add("memory_budget_mb", &C::memory_budget_mb,
          "MiB all loaded models may hold (0: no limit); past it the least recently used idle "
          "models are unloaded, and load again on their next request",
          O{.min = 0});
    s.Add("load_model", &C::load_model,
          "With model_control_mode explicit: a model to load at start ('*': every model)");
    // Listeners and their budgets.
    s.Add("http_address", &C::http_address, "Address for HTTP");
    s.Add("http_port", &C::http_port, "HTTP port", O{.min = 0, .max = 65535});
    s.Add("grpc_address", &C::grpc_address, "Address for gRPC");
    s.Add("grpc_port", &C::grpc_port, "gRPC port (0: no gRPC listener)", O{.min = 0, .max = 65535});
    s.Add("metrics_address", &C::metrics_address, "Address for a metrics listener of its own");
    s.Add("metrics_port", &C::metrics_port, "Metrics port (-1: /metrics on the HTTP port; 0: none)",
          O{.min = -1, .max = 65535});
    s.Add("max_request_bytes", &C::max_request_bytes,
          "Largest request body accepted (an inference request or package upload)",
          O{.min = 1024, .max = double(2ull << 30)});
    s.Add("max_inflight_bytes", &C::max_inflight_bytes,
          "Request and response bytes held at once per front end, past which requests are "
          "refused with 503 (0: twice max_request_bytes)");
    s.Add("http_threads", &C::http_threads, "Requests handled at once over HTTP",
          O{.flag = "--http-threads,--http-thread-count", .min = 1, .max = 1024});
    s.Add("http_max_connections", &C::http_max_connections,
          "Open HTTP connections; past it idle and slow ones are closed first",
          O{.min = 1, .max = 65536});
    s.Add("grpc_max_concurrent_streams", &C::grpc_max_concurrent_streams,
          "gRPC calls at once per connection", O{.min = 1, .max = 1024});
    s.Add("http_allowed_hosts", &C::http_allowed_hosts,
          "Host names HTTP answers to besides IP literals, localhost and this machine's name "
          "(others are refused: DNS rebinding)");
    s.Add("http_cors_origins", &C::http_cors_origins,
          "Origins (scheme://host[:port]) of web pages allowed to call the HTTP API (default: "
          "none; requests carrying any other Origin are refused)");
    // Who may call.
    s.Add("auth_dir", &C::auth_dir,
          "API keys (stored hashed) and the console's admin key file (admin.key, 0600)");
    s.Add("auth_open_scopes", &C::auth_open_scopes,
          "Scopes callers on a loopback listener have without a credential (never admin)");
    s.Add("insecure_open_beyond_loopback", &C::insecure_open_beyond_loopback,
          "INSECURE: listeners beyond loopback also grant auth_open_scopes without a credential");
    s.Add("tls_cert_file", &C::tls_cert_file,
          "TLS certificate chain (PEM) for HTTP, gRPC and metrics; reloaded when it changes");
    s.Add("tls_key_file", &C::tls_key_file, "TLS private key (PEM, 0600)");
    s.Add("tls_client_ca_file", &C::tls_client_ca_file,
          "CA (PEM) whose client certificates are accepted (mTLS; optional for clients)");
    s.Add("tls_client_subjects", &C::tls_client_subjects,
          "Scopes of client certificates by subject (RFC 2253): {\"CN=app,O=org\": [scopes]}");
    s.Add("tls_reload_secs", &C::tls_reload_secs,
          "Seconds between checks of the TLS files for changes", O{.min = 1, .max = 3600});
    s.Add("unix_socket", &C::unix_socket,
          "A Unix socket serving the HTTP API to local programs (empty: none)");
    s.Add("unix_socket_peers", &C::unix_socket_peers,
          "Scopes of Unix socket peers by uid/gid: {\"uid:N\"|\"gid:N\"|\"user:NAME\"|"
          "\"group:NAME\": [scopes]}");
    s.Add("insecure_plaintext_beyond_loopback", &C::insecure_plaintext_beyond_loopback,
          "INSECURE: listen beyond loopback without TLS (credentials cross the network in clear)");
    s.Add("default_timeout_ms", &C::default_timeout_ms,
          "Per-request time limit when the request sets none", O{.min = 1});
    // ONNX Runtime.
    s.Add("intra_op_threads", &C::intra_op_threads,
          "ONNX Runtime threads per inference (0: one per core)", O{.min = 0, .max = 1024});
    s.Add("thread_spinning", &C::thread_spinning,
          "ONNX Runtime pool threads spin briefly before sleeping");
    s.Add("memory_arena", &C::memory_arena, "ONNX Runtime's CPU memory arena");
    s.Add("ort_format_models", &C::ort_format_models,
          "Keep ONNX models that run on the CPU in ORT format too (optimized once for this CPU, "
          "weights read in place from <version>/.derived/)");
    s.Add("execution_providers", &C::execution_providers,
          "ONNX Runtime execution providers in order of preference");
    // Over-the-air updates.
    s.Add("update_url", &C::update_url,
          "Update repository (TUF) URL serving metadata/ and targets/ (empty: updates off)");
    s.Add("update_root", &C::update_root,
          "The update repository's initial root.json, trusted on first use");
    s.Add("update_state_dir", &C::update_state_dir,
          "Trusted update metadata and downloads (empty: <model_repository>/.updates)");
    s.Add("update_interval_secs", &C::update_interval_secs,
          "Seconds between update checks, jittered");
    s.Add("update_jitter", &C::update_jitter, "Jitter of the check interval, a fraction");
    s.Add("update_check_on_start", &C::update_check_on_start,
          "A first check soon after start (jittered up to 60 s)");
    s.Add("update_canary_secs", &C::update_canary_secs,
          "Canary window of a model update before it commits", O{.min = 0});
    s.Add("update_canary_fraction", &C::update_canary_fraction,
          "Share of requests the canary serves");
    s.Add("update_max_error_rate_increase", &C::update_max_error_rate_increase,
          "Error-rate rise over the old version that rolls a canary back", O{.min = 0, .max = 1});
    s.Add("update_probe_budget_ms", &C::update_probe_budget_ms,
          "Time the probes of an update may take", O{.min = 1});
    s.Add("update_probes", &C::update_probes, "Model name -> KServe JSON request to probe it with");
    s.Add("update_windows", &C::update_windows, "Maintenance windows, HH:MM-HH:MM local time");
    s.Add("update_max_bytes_per_second", &C::update_max_bytes_per_second,
          "Download rate limit (0: none)");
    s.Add("update_metered_interfaces", &C::update_metered_interfaces,
          "Network interfaces over which nothing is downloaded");
    s.Add("update_pinned_models", &C::update_pinned_models, "Models that updates leave alone",
          O{.flag = "--update-pinned-models,--pin-model"});
    s.Add("update_min_bytes_per_second", &C::update_min_bytes_per_second,
          "Slower than this for a window: a slow-retrieval attack", O{.min = 0});
    s.Add("update_slow_window_secs", &C::update_slow_window_secs,
          "The window of update_min_bytes_per_second");
    s.Add("update_download_attempts", &C::update_download_attempts,
          "Download attempts per check, each resuming the last");
    // The fleet.
    s.Add("fleet_url", &C::fleet_url, "Fleet server URL (needs update_url)");
    s.Add("fleet_enrollment_token", &C::fleet_enrollment_token, "One-time enrollment token",
          O{.secret = true});
    s.Add("fleet_state_dir", &C::fleet_state_dir,
          "The device's fleet identity (empty: <model_repository>/.fleet)");
    s.Add("fleet_poll_secs", &C::fleet_poll_secs, "Seconds between polls of the fleet server",
          O{.min = 1});
    s.Add("fleet_allow_local_install", &C::fleet_allow_local_install,
          "A managed device still takes package uploads and forced update checks from an admin "
          "key at the device (each reported to the fleet)");
    // Health, telemetry and monitoring.
    s.Add("health", &C::health, "Resource polling and load shedding");
    s.Add("device_id", &C::device_id, "Device id (empty: /etc/machine-id, else the host name)");
    s.Add("telemetry_otlp_url", &C::telemetry_otlp_url,
          "OTLP/HTTP collector for events (empty: telemetry off)");
    s.Add("telemetry_dir", &C::telemetry_dir,
          "The telemetry outbox (empty: <model_repository>/.telemetry)");
    s.Add("telemetry_max_bytes", &C::telemetry_max_bytes, "The outbox's size on disk");
    s.Add("telemetry_summary_secs", &C::telemetry_summary_secs,
          "Seconds per telemetry summary (0: none)", O{.min = 0});
    s.Add("telemetry_noise_epsilon", &C::telemetry_noise_epsilon,
          "Laplace noise on summary counts (0: none)", O{.min = 0});
    s.Add("monitoring_webhook_url", &C::monitoring_webhook_url, "Webhook told of drift events");
    s.Add("monitoring_captures_allowed", &C::monitoring_captures_allowed,
          "Inputs may be captured for retraining where a model's manifest asks");
    // Chat.
    s.Add("chat_router", &C::chat_router, "Routing between local chat models and the cloud");
    s.Add("chat_cloud", &C::chat_cloud, "The cloud LLM (its API key comes from secrets_dir)");
    s.Add("secrets_dir", &C::secrets_dir, "The encrypted secret store");
    // Logs.
    s.Add("log_level", &C::log_level, "trace, debug, info, warn or error");
    s.Add("log_format", &C::log_format, "text or json", O{.one_of = {"text", "json"}});
    return s;
  }();
  return schema;
}

void ApplyConfigJson(const nlohmann::json& j, AgentConfig& c) {
  AgentConfigSchema().Apply(j, c);
  ParseRouterConfig(c.chat_router, c.chat_cloud);  // refuse a bad router config at load time
}

nlohmann::json ToJson(const AgentConfig& c) { return AgentConfigSchema().ToJson(c); }

void CheckAgentConfig(const AgentConfig& c) {
  AgentConfigSchema().Check(c);
  auto bad = [](const std::string& message) { Fail(ErrorCode::kInvalidArgument, message); };
  // A request of the largest allowed size must fit, or it could never be served.
  if (c.max_inflight_bytes != 0 && c.max_inflight_bytes < c.max_request_bytes)
    bad("max_inflight_bytes must be 0 or at least max_request_bytes");
  const auth::Scopes open = auth::ParseScopes(c.auth_open_scopes);
  if (auth::Has(open, auth::Scope::kAdmin))
    bad("auth_open_scopes may not hold 'admin': admin always needs a credential");
  auth::ParsePeerPolicy(c.unix_socket_peers);
  // Credentials crossing a network in clear can be read by anyone on the path.
  auto plaintext_beyond_loopback = [&](const char* key, const std::string& address) {
    if (!auth::IsLoopbackAddress(address) && !c.insecure_plaintext_beyond_loopback)
      bad(std::string(key) + " " + address +
          " is beyond loopback, where plaintext is refused; to accept it anyway, set "
          "insecure_plaintext_beyond_loopback (--insecure-plaintext-beyond-loopback)");
  };
  if (c.tls_cert_file.empty() != c.tls_key_file.empty())
    bad("tls_cert_file and tls_key_file go together");
  if (!c.tls_client_ca_file.empty() && c.tls_cert_file.empty())
    bad("tls_client_ca_file needs tls_cert_file and tls_key_file");
  if (!c.tls_client_subjects.empty() && c.tls_client_ca_file.empty())
    bad("tls_client_subjects needs tls_client_ca_file: who vouches for the subjects");
  auth::ParseSubjectPolicy(c.tls_client_subjects);
  if (c.tls_cert_file.empty()) {
    plaintext_beyond_loopback("http_address", c.http_address);
    if (c.grpc_port != 0) plaintext_beyond_loopback("grpc_address", c.grpc_address);
    if (c.metrics_port > 0) plaintext_beyond_loopback("metrics_address", c.metrics_address);
  }
  if (!c.load_model.empty() && c.model_control_mode != "explicit")
    bad("load_model needs model_control_mode explicit: the other modes load every model");
  if (!c.fleet_url.empty() && c.update_url.empty())
    bad("fleet_url needs update_url: the repository the fleet's packages come from");
  if (c.update_url.empty()) return;
  if (c.update_interval_secs <= 0) bad("update_interval_secs must be > 0");
  if (c.update_jitter < 0 || c.update_jitter >= 1) bad("update_jitter must be in [0, 1)");
  if (c.update_canary_fraction <= 0 || c.update_canary_fraction > 1)
    bad("update_canary_fraction must be in (0, 1]");
  if (!c.update_probes.is_object()) bad("update_probes must map model names to requests");
  for (const auto& w : c.update_windows) tuf::ParseWindow(w);
  if (c.update_slow_window_secs < 1 || c.update_download_attempts < 1)
    bad("update_slow_window_secs and update_download_attempts must be >= 1");
}

}  // namespace outpost
