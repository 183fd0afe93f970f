// The KServe v2 gRPC front end (inference.GRPCInferenceService).
#pragma once

#include <memory>
#include <string>

#include "serving/inference_service.h"
#include "serving/server_info.h"

namespace grpc {
class Server;
}

namespace outpost {

struct GrpcOptions {
  std::string address = "127.0.0.1";
  int port = 8001;
  size_t max_message_bytes = 64u << 20;
};

class GrpcServer {
 public:
  GrpcServer(GrpcOptions options, InferenceService& service, const ServerInfo& info);
  ~GrpcServer();
  int Start();  // returns the bound port
  void Stop();

 private:
  class Impl;
  GrpcOptions options_;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace outpost
