// The whole serving agent in one object: model manager, inference service, HTTP and gRPC
// front ends, metrics. outpostd is a thin main() around it; tests and benchmarks embed it.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "package/keys.h"
#include "serving/model_manager.h"
#include "serving/server_info.h"

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
  size_t max_request_bytes = 64u << 20;
  int http_threads = 32;
  double repository_poll_secs = 1.0;  // 0: load once, do not watch
  int default_timeout_ms = 30000;
  int intra_op_threads = 0;     // 0: one per core
  bool thread_spinning = true;  // ORT pool threads spin briefly before sleeping
  bool memory_arena = true;
  std::vector<std::string> execution_providers;
  std::string log_level = "info";
  std::string log_format = "text";  // or "json"
};

// Applies the keys of a JSON config file (same names as the fields above) over `config`.
// Throws Error(kInvalidArgument) for an unknown key or a value of the wrong type.
void ApplyConfigJson(const nlohmann::json& j, AgentConfig& config);
nlohmann::json ToJson(const AgentConfig& config);

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

 private:
  struct Parts;
  IndexEntry InstallUploadedPackage(const std::string& bytes);
  AgentConfig config_;
  std::optional<TrustPolicy> trust_;
  ServerInfo info_;
  std::unique_ptr<Parts> parts_;
};

}  // namespace outpost
