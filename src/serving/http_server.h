// The KServe v2 REST front end (plus /metrics, the repository index, the OpenAI chat API and
// the agent's own control endpoints), on the budgeted server of http/server.h: each route has
// its own body limit (control endpoints take kilobytes, inference what the config says), and
// health and metrics keep connections and workers of their own.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "auth/api_keys.h"
#include "auth/authorizer.h"
#include "auth/scopes.h"
#include "http/browser_guard.h"
#include "http/server.h"
#include "serving/chat_service.h"
#include "serving/inference_service.h"
#include "serving/metrics.h"
#include "serving/server_info.h"

namespace outpost {

struct HttpOptions {
  std::string address = "127.0.0.1";
  int port = 8000;
  size_t max_body_bytes = 64u << 20;  // inference requests and package uploads
  http::ServerLimits limits;
  http::BrowserPolicy browser;
  // Who may call: API keys (null: none accepted; /v2/auth/keys answers 404) and the scopes
  // anyone reaching the listener has without a credential.
  auth::ApiKeyStore* keys = nullptr;
  auth::Scopes open_scopes = auth::Scope::kInference | auth::Scope::kChat | auth::Scope::kObserve;
  // The same API on a Unix socket (empty: none), its peers' scopes by uid/gid.
  std::string unix_socket;
  auth::PeerPolicy unix_peers;
  // TLS on the TCP listener (null: plaintext); a verified client certificate's subject grants
  // the scopes mapped here.
  std::shared_ptr<http::TlsContext> tls;
  auth::SubjectPolicy tls_client_subjects;
  bool serve_metrics = true;
  // /v1/models and /v1/chat/completions (OpenAI). Unset: those answer 404.
  ChatService* chat = nullptr;
  // GET /v2/health and the components in /v2/health/ready. Unset: ready = models ready.
  std::function<nlohmann::json()> health;
  // GET /v2/monitoring: the drift monitors' state. Unset: 404.
  std::function<nlohmann::json()> monitoring_status;
  // POST /v2/repository/packages: installs the uploaded package bytes and returns the new
  // version's repository index entry. Unset: the endpoint answers 404.
  // `caller` is who asked (an API key id).
  std::function<IndexEntry(const std::string& package, const std::string& caller)> install_package;
  // POST /v2/repository/models/{model}/load|unload (explicit model control): the model's index
  // entries after a load; nothing after an unload. Unset: the endpoints answer 404.
  std::function<std::vector<IndexEntry>(const std::string& model, bool load,
                                        const std::string& caller)>
      model_control;
  // GET /v2/updates and POST /v2/updates/check[?force=true]. Unset: updates are off.
  std::function<nlohmann::json()> update_status;
  std::function<nlohmann::json(bool force, const std::string& caller)> update_check;
};

class HttpServer {
 public:
  HttpServer(HttpOptions options, InferenceService& service, MetricsRegistry& metrics,
             const ServerInfo& info);
  ~HttpServer();
  // Binds and starts serving on background threads; returns the bound port (for port 0).
  int Start();
  void Stop();
  http::ServerStats Stats() const { return server_.Stats(); }
  // The front end's budgets at scrape time: connections, bytes held, refusals.
  void AppendMetrics(std::string& out) const;

 private:
  void Routes();
  void OpenAiRoutes();
  void KeyRoutes();
  void SharedMemoryRoutes();
  CloudPermit CloudPermitOf(const http::Request& req) const;
  HttpOptions options_;
  InferenceService& service_;
  MetricsRegistry& metrics_;
  const ServerInfo& info_;
  http::BrowserGuard guard_;  // outlives server_, whose middleware holds it
  http::Server server_;
};

// A listener that serves only GET /metrics, for --metrics-port.
class MetricsServer {
 public:
  MetricsServer(std::string address, int port, MetricsRegistry& metrics,
                http::BrowserPolicy browser = {}, const auth::ApiKeyStore* keys = nullptr,
                auth::Scopes open_scopes = static_cast<auth::Scopes>(auth::Scope::kObserve),
                std::shared_ptr<http::TlsContext> tls = nullptr,
                auth::SubjectPolicy tls_client_subjects = {});
  ~MetricsServer();
  int Start();
  void Stop();

 private:
  std::string address_;
  int port_;
  http::BrowserGuard guard_;
  http::Server server_;
};

}  // namespace outpost
