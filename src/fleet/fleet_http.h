// The fleet server's HTTP front end: the JSON API under /api/v1 (operators with bearer
// tokens, devices with signed requests), the dashboard, and the rollout controller's clock.
// Errors become HTTP statuses here, once: {"error": "..."}.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "fleet/fleet.h"

namespace httplib {
class Server;
}

namespace outpost::fleet {

struct FleetServerOptions {
  std::string host = "127.0.0.1";
  int port = 8500;
  int threads = 16;
  std::chrono::milliseconds rollout_tick{1000};
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

 private:
  void Routes();
  void ControllerLoop();

  Fleet& fleet_;
  FleetServerOptions options_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread controller_;
};

}  // namespace outpost::fleet
