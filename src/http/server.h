// An HTTP/1.1 server for hostile networks: one epoll thread owns every socket (so a slow or
// idle client costs a few KB, never a thread), handlers run on worker pools, and every
// resource a client can make it spend has a budget:
//  - the head: its bytes and field count (431), its arrival within header_timeout of the first
//    byte, however slowly it trickles (408);
//  - the body: a limit per route, refused from Content-Length before a byte is read (413), a
//    deadline of body_timeout plus what min_body_rate needs for its size (408);
//  - bytes in flight: request and response bodies held across all connections; a request that
//    would pass max_inflight_bytes is answered 503 with Retry-After before its body is read;
//  - connections: past max_connections, connections that never sent a request are closed
//    first, then the slowest unfinished requests, then idle keep-alive connections of clients
//    already served; reserved_connections more are admitted for priority routes only
//    (health and metrics), which also have workers of their own, so a flood of slow inference
//    never keeps a health probe waiting;
//  - responses: bounded buffering of streamed bodies, and write_timeout without progress.
// Why not cpp-httplib: it holds a worker thread per connection for the connection's life, has
// per-read (not per-request) timeouts, no header-size or in-flight budgets, and answers
// multi-range requests with unbounded multipart bodies.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "http/message.h"
#include "http/request_parser.h"

namespace outpost {
class MemoryBudget;
}

namespace outpost::http {
class TlsContext;
}

namespace outpost::http {

struct ServerLimits {
  HeadLimits head;
  size_t max_connections = 512;
  size_t reserved_connections = 16;
  size_t default_max_body = 64u << 10;
  size_t max_inflight_bytes = 128u << 20;
  MemoryBudget* budget = nullptr;  // shared with other front ends; unset: max_inflight_bytes
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds idle_timeout{5000};
  std::chrono::milliseconds body_timeout{10000};
  uint64_t min_body_rate = 256u << 10;  // bytes/s a body must keep up on top of body_timeout
  std::chrono::milliseconds write_timeout{30000};
  size_t stream_buffer_bytes = 256u << 10;  // a streamed response waits while more is unsent
  int worker_threads = 16;
  int priority_threads = 2;
  size_t max_queued = 256;  // requests waiting for a worker; past it: 503
};

struct RouteOptions {
  size_t max_body = 0;    // 0: ServerLimits::default_max_body
  bool priority = false;  // health and metrics: reserved connections and workers
  uint32_t access = 0;    // what the route requires, for the admission check to interpret
};

// What the admission check answers instead of the handler; status 0: admitted.
struct Refusal {
  int status = 0;
  std::string message;
  std::vector<std::pair<std::string, std::string>> headers;  // WWW-Authenticate, ...
};

using Handler = std::function<void(const Request&, Response&)>;
// Runs around every handler on its worker (request ids, logging): call `handler` inside.
using Middleware = std::function<void(const Request&, Response&, const Handler& handler)>;
// The body of an error the server answers itself (404, 413, 503...): {"error": message}
// unless replaced (the OpenAI routes answer in their own shape).
using ErrorBody = std::function<std::string(const Request&, int status, const std::string&)>;
// Decides from the head, before any body byte is read, whether the request goes on (who is
// calling and what they may do: it may record that in Request::caller and ::granted). Runs on
// the event loop, so it must be quick and never block.
using Admission = std::function<Refusal(Request& head, const RouteOptions& route)>;

struct ServerStats {
  uint64_t connections = 0;     // open now
  uint64_t inflight_bytes = 0;  // request and response bodies held now
  uint64_t accepted_total = 0;
  uint64_t evicted_total = 0;     // closed to make room (idle or slow)
  uint64_t refused_total = 0;     // connections turned away at the cap
  uint64_t timed_out_total = 0;   // 408s and write timeouts
  uint64_t overloaded_total = 0;  // 503s for in-flight bytes or queue length
};

class Server {
 public:
  explicit Server(ServerLimits limits = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Patterns are literal segments and {name} segments ("/v2/models/{model}/infer"); the first
  // matching route wins. GET routes answer HEAD too.
  void Route(std::string method, std::string pattern, Handler handler, RouteOptions options = {});
  void Use(Middleware middleware);  // several: the first used runs outermost
  // Answers OPTIONS on any path some route serves (CORS preflights); unset: 405.
  void SetPreflight(Handler handler);
  void SetErrorBody(ErrorBody body);
  void Admit(Admission admission);  // several: in the order given; the first refusal answers

  // Binds address:port (port 0: any free one) and returns the port. Throws Error(kUnavailable).
  int Bind(const std::string& address, int port);
  // Also (or only) a Unix domain socket at `path`, mode 0666: each request carries the peer's
  // uid and gid (SO_PEERCRED) for the admission check to map. Removed at Stop().
  void BindUnix(const std::string& path);
  // TCP connections speak TLS (before Start). Unix socket connections stay plaintext: the
  // kernel vouches for their peer.
  void SetTls(std::shared_ptr<TlsContext> tls);
  void Start();  // the event loop and the workers
  void Stop();   // stops accepting, ends connections, waits for running handlers

  ServerStats Stats() const;
  const ServerLimits& limits() const { return limits_; }

 private:
  class Impl;
  ServerLimits limits_;
  std::unique_ptr<Impl> impl_;
};

// "{\"error\": <message>}" as JSON.
std::string JsonErrorBody(const std::string& message);

}  // namespace outpost::http
