// The fleet server's HTTP front end: the JSON API under /api/v1 (operators with bearer
// tokens, devices with signed requests), the dashboard, and the rollout controller's clock.
// Errors become HTTP statuses here, once: {"error": "..."}.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "fleet/fleet.h"
#include "http/server.h"

namespace outpost::fleet {

struct FleetServerOptions {
  std::string host = "127.0.0.1";
  int port = 8500;
  int threads = 16;
  int max_connections = 4096;  // past it, idle and slow connections are closed first
  std::chrono::milliseconds rollout_tick{1000};
  Millis audit_sign_interval = 300000;  // the signed audit head is logged this often at least
  int poll_secs = 60;  // what devices are told to wait between polls (they add jitter)
};

class FleetServer {
 public:
  FleetServer(Fleet& fleet, FleetServerOptions options);
  ~FleetServer();

  // Binds (throws Error(kUnavailable) when the port is taken) and serves until Stop().
  void Bind();
  int port() const { return port_; }
  void Serve();
  void Stop();
  http::ServerStats Stats() const { return http_.Stats(); }

 private:
  void Routes();
  void ControllerLoop();

  Fleet& fleet_;
  FleetServerOptions options_;
  http::Server http_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::thread controller_;
};

}  // namespace outpost::fleet
