// The KServe v2 REST front end (plus /metrics and the repository index).
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "serving/chat_service.h"
#include "serving/inference_service.h"
#include "serving/metrics.h"
#include "serving/server_info.h"

namespace httplib {
class Server;
}

namespace outpost {

struct HttpOptions {
  std::string address = "127.0.0.1";
  int port = 8000;
  size_t max_body_bytes = 64u << 20;
  int threads = 32;  // one per open connection; keep-alive clients each hold one
  std::chrono::seconds read_timeout{10};
  bool serve_metrics = true;
  // /v1/models and /v1/chat/completions (OpenAI). Unset: those answer 404.
  ChatService* chat = nullptr;
  // GET /v2/health and the components in /v2/health/ready. Unset: ready = models ready.
  std::function<nlohmann::json()> health;
  // GET /v2/monitoring: the drift monitors' state. Unset: 404.
  std::function<nlohmann::json()> monitoring_status;
  // POST /v2/repository/packages: installs the uploaded package bytes and returns the new
  // version's repository index entry. Unset: the endpoint answers 404.
  std::function<IndexEntry(const std::string& package)> install_package;
  // GET /v2/updates and POST /v2/updates/check[?force=true]. Unset: updates are off.
  std::function<nlohmann::json()> update_status;
  std::function<nlohmann::json(bool force)> update_check;
};

class HttpServer {
 public:
  HttpServer(HttpOptions options, InferenceService& service, MetricsRegistry& metrics,
             const ServerInfo& info);
  ~HttpServer();
  // Binds and starts serving on a background thread; returns the bound port (for port 0).
  int Start();
  void Stop();

 private:
  void Routes();
  void OpenAiRoutes();
  HttpOptions options_;
  InferenceService& service_;
  MetricsRegistry& metrics_;
  const ServerInfo& info_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

// A listener that serves only GET /metrics, for --metrics-port.
class MetricsServer {
 public:
  MetricsServer(std::string address, int port, MetricsRegistry& metrics);
  ~MetricsServer();
  int Start();
  void Stop();

 private:
  std::string address_;
  int port_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace outpost
