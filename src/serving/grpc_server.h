// The KServe v2 gRPC front end (inference.GRPCInferenceService).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "auth/api_keys.h"
#include "auth/authorizer.h"
#include "auth/scopes.h"
#include "serving/inference_service.h"
#include "serving/model_manager.h"
#include "serving/server_info.h"

namespace grpc {
class Server;
class ServerCredentials;
}  // namespace grpc

namespace outpost {

class MemoryBudget;

struct GrpcOptions {
  std::string address = "127.0.0.1";
  int port = 8001;
  size_t max_message_bytes = 64u << 20;
  int max_concurrent_streams = 16;         // per connection (HTTP/2 SETTINGS)
  size_t max_inflight_bytes = 128u << 20;  // gRPC's own memory quota: buffers of every call
  int max_threads = 64;                    // the synchronous server's threads, at most
  MemoryBudget* budget = nullptr;          // what calls hold at once, shared with HTTP
  // Who may call (as for HTTP): API keys, and the scopes granted without a credential.
  const auth::ApiKeyStore* keys = nullptr;
  auth::Scopes open_scopes = auth::Scope::kInference | auth::Scope::kChat | auth::Scope::kObserve;
  // TLS (empty tls_cert_file: plaintext). The files are watched and reloaded when they change;
  // with a client CA, a client certificate (optional) grants the scopes of its subject.
  std::string tls_cert_file, tls_key_file, tls_client_ca_file;
  unsigned tls_reload_secs = 10;
  auth::SubjectPolicy tls_client_subjects;
  // RepositoryModelLoad/Unload (explicit model control), as HttpOptions::model_control. Unset:
  // UNIMPLEMENTED.
  std::function<std::vector<IndexEntry>(const std::string& model, bool load,
                                        const std::string& caller)>
      model_control;
};

class GrpcServer {
 public:
  GrpcServer(GrpcOptions options, InferenceService& service, const ServerInfo& info);
  ~GrpcServer();
  int Start();  // returns the bound port
  void Stop();

 private:
  class Impl;
  std::shared_ptr<grpc::ServerCredentials> Credentials() const;
  GrpcOptions options_;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace outpost
