// The agent's configuration: its fields, and the one schema (core/config_schema.h) that reads
// them from a config file, prints them, checks them and gives each its command-line flag.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "auth/scopes.h"
#include "core/config_schema.h"

namespace outpost {

struct AgentConfig {
  std::filesystem::path model_repository;
  std::filesystem::path trust_file;    // who may sign models; empty: none (nothing signed loads)
  bool allow_unsigned_models = false;  // development mode: serve unsigned directories too
  std::string http_address = "127.0.0.1";
  int http_port = 8000;
  std::string grpc_address = "127.0.0.1";
  int grpc_port = 8001;   // 0: no gRPC listener
  int metrics_port = -1;  // -1: /metrics on the HTTP port; 0: none; N: a listener of its own
  std::string metrics_address = "127.0.0.1";
  size_t max_request_bytes = 64u << 20;  // an inference request or package upload
  // Request and response bodies held at once (each front end): past it, 503 / RESOURCE_EXHAUSTED.
  // 0: twice max_request_bytes.
  size_t max_inflight_bytes = 0;
  int http_threads = 32;                 // handlers running at once (connections cost no thread)
  int http_max_connections = 512;        // past it, idle and slow connections are closed first
  int grpc_max_concurrent_streams = 16;  // per connection
  // What browsers may do (http/browser_guard.h): Host names answered besides IP literals,
  // localhost and the hostname; origins of pages allowed to call the API (none by default).
  std::vector<std::string> http_allowed_hosts;
  std::vector<std::string> http_cors_origins;
  // Who may call (auth/): API keys and the console's admin key live in auth_dir; on a
  // loopback listener the open scopes need no credential (admin always does); beyond loopback
  // every scope needs one and plaintext is refused, unless the insecure switches say otherwise.
  std::filesystem::path auth_dir = "/var/lib/outpost/auth";
  std::vector<std::string> auth_open_scopes = {"inference", "chat", "observe"};
  bool insecure_open_beyond_loopback = false;
  bool insecure_plaintext_beyond_loopback = false;
  // A Unix socket for local programs (empty: none): its peers' uid/gid grant scopes
  // (auth::PeerPolicy); anything more needs a key, as on TCP.
  // TLS for every TCP listener (HTTP, gRPC, metrics): the certificate chain and key (PEM, the
  // key 0600), reloaded when they change; with a client CA, clients may present certificates,
  // whose subjects (RFC 2253) tls_client_subjects maps to scopes.
  std::filesystem::path tls_cert_file;
  std::filesystem::path tls_key_file;
  std::filesystem::path tls_client_ca_file;
  nlohmann::json tls_client_subjects = nlohmann::json::object();
  int tls_reload_secs = 10;
  std::filesystem::path unix_socket;
  nlohmann::json unix_socket_peers = nlohmann::json::object();
  double repository_poll_secs = 1.0;        // 0: load once, do not watch
  std::string model_control_mode = "poll";  // none, poll, explicit (as Triton's)
  std::vector<std::string> load_model;      // explicit: loaded at start ("*": all)
  double memory_budget_mb = 0;              // resident bytes models may hold (0: no limit)
  int default_timeout_ms = 30000;
  int intra_op_threads = 0;     // 0: one per core
  bool thread_spinning = true;  // ORT pool threads spin briefly before sleeping
  bool memory_arena = true;
  bool ort_format_models = true;  // CPU models also kept in ORT format (<version>/.derived/)
  std::vector<std::string> execution_providers;
  // Over-the-air model updates from a TUF repository (update_service.h). Off without a URL.
  std::string update_url;
  std::filesystem::path update_root;       // the repository's initial root.json (shipped)
  std::filesystem::path update_state_dir;  // empty: <model_repository>/.updates
  double update_interval_secs = 3600;
  double update_jitter = 0.2;
  bool update_check_on_start = true;  // a first check soon after start (jittered up to 60 s)
  double update_canary_secs = 30;
  double update_canary_fraction = 0.5;
  double update_max_error_rate_increase = 0.05;
  int update_probe_budget_ms = 1000;
  nlohmann::json update_probes = nlohmann::json::object();  // model -> KServe JSON request
  std::vector<std::string> update_windows;                  // "HH:MM-HH:MM", local time
  uint64_t update_max_bytes_per_second = 0;
  std::vector<std::string> update_metered_interfaces;
  std::vector<std::string> update_pinned_models;
  double update_min_bytes_per_second = 1024;  // slower than this for a window: slow retrieval
  int update_slow_window_secs = 10;
  int update_download_attempts = 8;  // per check; each resumes where the last one stopped
  // A fleet server (fleet/fleet_client.h): the device enrolls with the one-time token, then
  // follows the desired state it is given through the update client (needs update_url).
  std::string fleet_url;
  std::string fleet_enrollment_token;     // used once; never printed
  std::filesystem::path fleet_state_dir;  // empty: <model_repository>/.fleet
  double fleet_poll_secs = 60;
  bool fleet_allow_local_install = false;  // local uploads and forced checks on a managed device
  // Health: resource polling and load shedding; keys proc_root, sys_root, poll_secs,
  // min_memory_available_fraction, max_temperature_c, min_disk_free_bytes.
  nlohmann::json health = nlohmann::json::object();
  // Telemetry: events (drift, ...) wait in an on-disk outbox and go to an OTLP/HTTP collector.
  std::string device_id;                // empty: /etc/machine-id, else the host name
  std::string telemetry_otlp_url;       // empty: telemetry off
  std::filesystem::path telemetry_dir;  // empty: <model_repository>/.telemetry
  uint64_t telemetry_max_bytes = 64u << 20;
  double telemetry_summary_secs = 60;  // aggregates per interval; 0: none
  double telemetry_noise_epsilon = 0;  // > 0: Laplace noise on counts (differential privacy)
  // Drift: a webhook told of every event; captures of inputs for retraining (off unless the
  // device allows them here *and* the model's manifest asks; BYTES are redacted, size capped).
  std::string monitoring_webhook_url;
  bool monitoring_captures_allowed = false;
  // Chat: the router between the device's chat models and a cloud LLM (llm/router.h), and
  // the encrypted store its API key is read from.
  nlohmann::json chat_router = nlohmann::json::object();
  nlohmann::json chat_cloud = nlohmann::json::object();
  std::filesystem::path secrets_dir = "/var/lib/outpost/secrets";
  std::string log_level = "info";
  std::string log_format = "text";  // or "json"
};

const ConfigSchema<AgentConfig>& AgentConfigSchema();

// Applies the keys of a JSON config file (same names as the fields above) over `config`.
// Throws Error(kInvalidArgument) for an unknown key or a value of the wrong type.
void ApplyConfigJson(const nlohmann::json& j, AgentConfig& config);
nlohmann::json ToJson(const AgentConfig& config);
// Every key's range and the rules across keys; throws Error(kInvalidArgument) naming the key.
void CheckAgentConfig(const AgentConfig& config);

}  // namespace outpost
