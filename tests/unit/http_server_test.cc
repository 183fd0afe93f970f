// http/server over real loopback sockets: routes, keep-alive and pipelining, chunked bodies
// both ways, and every budget (head size, deadlines, body limits, bytes in flight, the
// connection cap with eviction and reserved capacity, graceful stop).
#include "http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "http/static_file.h"

namespace outpost::http {
namespace {

using namespace std::chrono_literals;

// A raw client connection: what goes out is exactly what a test writes.
class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "connect";
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  void Send(std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      s.remove_prefix(static_cast<size_t>(n));
    }
  }
  // Reads until `done` holds for what arrived, the peer closes, or `timeout` passes.
  std::string Read(std::chrono::milliseconds timeout,
                   const std::function<bool(const std::string&)>& done = {}) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (!(done && done(in_))) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[65536];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      in_.append(buf, static_cast<size_t>(n));
    }
    std::string out;
    out.swap(in_);
    return out;
  }
  // One whole response with a Content-Length (or one ending at the close).
  std::string Response(std::chrono::milliseconds timeout = 5000ms) {
    return Read(timeout, [](const std::string& s) {
      auto head = s.find("\r\n\r\n");
      if (head == std::string::npos) return false;
      auto cl = s.find("Content-Length: ");
      if (cl == std::string::npos || cl > head) return false;
      return s.size() >= head + 4 + std::stoul(s.substr(cl + 16));
    });
  }
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  std::string in_;
  bool closed_ = false;
};

int StatusOf(const std::string& response) {
  return response.size() > 12 ? std::stoi(response.substr(9, 3)) : 0;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void Start(ServerLimits limits = {}) {
    server_ = std::make_unique<Server>(limits);
    server_->Route("GET", "/hello/{name}", [](const Request& r, Response& res) {
      res.Set("hello " + r.PathParam("name") + " " + r.Query("x"), "text/plain");
    });
    server_->Route(
        "POST", "/echo",
        [](const Request& r, Response& res) { res.Set(r.body, "application/octet-stream"); },
        {.max_body = 1 << 20});
    server_->Route("GET", "/health",
                   [](const Request&, Response& res) { res.Set("ok", "text/plain"); },
                   {.priority = true});
    server_->Route("GET", "/slow", [this](const Request&, Response& res) {
      entered_++;
      while (!release_) std::this_thread::sleep_for(1ms);
      res.Set("slow", "text/plain");
    });
    server_->Route("GET", "/stream", [this](const Request&, Response& res) {
      res.Stream("text/plain", [this](StreamWriter& w) {
        for (int i = 0; i < 100000 && w.Write(std::string(1000, 'x')); ++i) {
        }
        stream_ended_ = true;
      });
    });
    port_ = server_->Bind("127.0.0.1", 0);
    server_->Start();
  }
  void TearDown() override {
    release_ = true;
    if (server_) server_->Stop();
  }

  std::unique_ptr<Server> server_;
  int port_ = 0;
  std::atomic<int> entered_{0};
  std::atomic<bool> release_{false}, stream_ended_{false};
};

TEST_F(HttpServerTest, RoutesKeepAliveAndPipelining) {
  Start();
  Client c(port_);
  c.Send("GET /hello/you?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
  auto r = c.Response();
  EXPECT_EQ(StatusOf(r), 200);
  EXPECT_NE(r.find("hello you 1"), std::string::npos);
  // Two requests in one write come back in order, on the same connection.
  c.Send("GET /hello/a HTTP/1.1\r\n\r\nGET /hello/b HTTP/1.1\r\n\r\n");
  auto both = c.Read(5000ms, [](const std::string& s) { return s.find("hello b") != s.npos; });
  EXPECT_LT(both.find("hello a"), both.find("hello b"));
  c.Send("GET /nothing HTTP/1.1\r\n\r\n");
  EXPECT_EQ(StatusOf(c.Response()), 404);
  c.Send("DELETE /echo HTTP/1.1\r\n\r\n");
  EXPECT_EQ(StatusOf(c.Response()), 405);
  c.Send("HEAD /hello/x HTTP/1.1\r\n\r\n");
  auto head = c.Read(2000ms, [](const std::string& s) { return s.find("\r\n\r\n") != s.npos; });
  EXPECT_EQ(StatusOf(head), 200);
  EXPECT_EQ(head.find("hello"), std::string::npos);
  c.Send("GET /hello/still HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_NE(c.Read(5000ms).find("hello still"), std::string::npos);
  EXPECT_TRUE(c.closed());
}

TEST_F(HttpServerTest, BodiesByLengthChunkedAndAfterContinue) {
  Start();
  Client c(port_);
  c.Send("POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_NE(c.Response().find("\r\n\r\nhello"), std::string::npos);
  c.Send(
      "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  EXPECT_NE(c.Response().find("\r\n\r\nabcde"), std::string::npos);
  c.Send("POST /echo HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(c.Read(2000ms, [](const std::string& s) { return s.find("\r\n\r\n") != s.npos; }),
            "HTTP/1.1 100 Continue\r\n\r\n");
  c.Send("xyz");
  EXPECT_NE(c.Response().find("\r\n\r\nxyz"), std::string::npos);
}

TEST_F(HttpServerTest, LimitsAreRefusedBeforeTheBodyIsRead) {
  ServerLimits l;
  l.head.max_head_bytes = 1024;
  l.head.max_headers = 10;
  Start(l);
  {  // 2 GiB declared: 413 at once, nothing read.
    Client c(port_);
    c.Send("POST /echo HTTP/1.1\r\nContent-Length: 2147483648\r\n\r\n");
    auto r = c.Read(2000ms);
    EXPECT_EQ(StatusOf(r), 413);
    EXPECT_NE(r.find("larger than 1048576 bytes"), std::string::npos);
  }
  {  // a route without a body limit of its own takes 64 KiB
    Client c(port_);
    c.Send("GET /hello/x HTTP/1.1\r\nContent-Length: 100000\r\n\r\n");
    EXPECT_EQ(StatusOf(c.Read(2000ms)), 413);
  }
  {  // endless header lines: 431 once the head passes its size
    Client c(port_);
    c.Send("GET /hello/x HTTP/1.1\r\n");
    for (int i = 0; i < 100; ++i) c.Send("X-Flood: " + std::string(50, 'a') + "\r\n");
    EXPECT_EQ(StatusOf(c.Read(2000ms)), 431);
  }
  {
    Client c(port_);
    std::string many = "GET /hello/x HTTP/1.1\r\n";
    for (int i = 0; i < 11; ++i) many += "H" + std::to_string(i) + ": v\r\n";
    c.Send(many + "\r\n");
    EXPECT_EQ(StatusOf(c.Read(2000ms)), 431);
  }
  {
    Client c(port_);
    c.Send("POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
    EXPECT_EQ(StatusOf(c.Read(2000ms)), 400);
  }
}

TEST_F(HttpServerTest, SlowHeadsAndBodiesMeetTheirDeadlines) {
  ServerLimits l;
  l.header_timeout = 300ms;
  l.body_timeout = 300ms;
  l.min_body_rate = 1 << 20;
  Start(l);
  Client head(port_), body(port_);
  // One byte at a time keeps a per-read timeout happy forever; a whole-request deadline not.
  head.Send("G");
  body.Send("POST /echo HTTP/1.1\r\nContent-Length: 1000\r\n\r\nabc");
  std::string got_head, got_body;
  for (int i = 0; i < 20 && got_head.empty(); ++i) {
    head.Send("E");
    got_head = head.Read(50ms);
  }
  EXPECT_EQ(StatusOf(got_head), 408);
  got_body = body.Read(3000ms);
  EXPECT_EQ(StatusOf(got_body), 408);
  EXPECT_EQ(server_->Stats().timed_out_total, 2u);
}

TEST_F(HttpServerTest, BytesInFlightAreCappedWith503) {
  ServerLimits l;
  l.max_inflight_bytes = 1000;
  Start(l);
  Client c(port_);
  c.Send("POST /echo HTTP/1.1\r\nContent-Length: 2000\r\n\r\n");
  auto r = c.Read(2000ms);
  EXPECT_EQ(StatusOf(r), 503);
  EXPECT_NE(r.find("Retry-After: 1"), std::string::npos);
  Client ok(port_);
  ok.Send("POST /echo HTTP/1.1\r\nContent-Length: 500\r\n\r\n" + std::string(500, 'b'));
  EXPECT_EQ(StatusOf(ok.Response()), 200);
  // The response's bytes are released once it is written: right after the client has it.
  for (int i = 0; i < 2000 && server_->Stats().inflight_bytes != 0; ++i)
    std::this_thread::sleep_for(1ms);
  EXPECT_EQ(server_->Stats().inflight_bytes, 0u);
}

TEST_F(HttpServerTest, NewIdleConnectionsAreEvictedFirstThenTheSlowest) {
  ServerLimits l;
  l.max_connections = 4;
  l.reserved_connections = 0;
  Start(l);
  auto is_closed = [](Client& c) {
    c.Read(300ms);
    return c.closed();
  };
  {
    Client idle1(port_), idle2(port_), half1(port_), half2(port_);
    half1.Send("GET /hel");
    half2.Send("GET /hel");
    std::this_thread::sleep_for(100ms);
    Client fresh1(port_), fresh2(port_);
    for (Client* f : {&fresh1, &fresh2}) {
      f->Send("GET /hello/new HTTP/1.1\r\n\r\n");
      EXPECT_EQ(StatusOf(f->Response()), 200);
    }
    EXPECT_TRUE(is_closed(idle1));
    EXPECT_TRUE(is_closed(idle2));
    EXPECT_FALSE(is_closed(half1));
    EXPECT_FALSE(is_closed(half2));
    // A client already served, idle between its requests, outlasts a flood of new ones.
    Client flood(port_);
    std::this_thread::sleep_for(50ms);
    Client flood2(port_);
    EXPECT_FALSE(is_closed(fresh1));
    EXPECT_TRUE(is_closed(flood));
  }
  while (server_->Stats().connections > 0) std::this_thread::sleep_for(1ms);
  // With nothing idle, the unfinished request that started longest ago goes.
  Client h0(port_);
  h0.Send("GET /hel");
  std::this_thread::sleep_for(50ms);
  Client h1(port_), h2(port_), h3(port_);
  for (Client* h : {&h1, &h2, &h3}) h->Send("GET /hel");
  std::this_thread::sleep_for(50ms);
  Client fresh(port_);
  fresh.Send("GET /hello/new HTTP/1.1\r\n\r\n");
  EXPECT_EQ(StatusOf(fresh.Response()), 200);
  EXPECT_TRUE(is_closed(h0));
  EXPECT_FALSE(is_closed(h1));
  // idle1, idle2, half1 (for flood), flood (for flood2), h0.
  EXPECT_EQ(server_->Stats().evicted_total, 5u);
}

TEST_F(HttpServerTest, HealthKeepsConnectionsAndWorkersOfItsOwn) {
  ServerLimits l;
  l.max_connections = 2;
  l.reserved_connections = 1;
  l.worker_threads = 2;
  Start(l);
  Client a(port_), b(port_);
  a.Send("GET /slow HTTP/1.1\r\n\r\n");
  b.Send("GET /slow HTTP/1.1\r\n\r\n");
  while (entered_ < 2) std::this_thread::sleep_for(1ms);
  // Both connections are busy (not evictable) and both workers too: health still answers,
  // on the reserved connection and the priority workers...
  {
    Client health(port_);
    health.Send("GET /health HTTP/1.1\r\n\r\n");
    EXPECT_EQ(StatusOf(health.Response()), 200);
  }
  while (server_->Stats().connections > 2) std::this_thread::sleep_for(1ms);
  // ...which take no ordinary request.
  Client other(port_);
  other.Send("GET /hello/x HTTP/1.1\r\n\r\n");
  EXPECT_EQ(StatusOf(other.Read(2000ms)), 503);
  release_ = true;
  EXPECT_EQ(StatusOf(a.Response()), 200);
}

TEST_F(HttpServerTest, StreamsStopWhenTheClientGoes) {
  Start();
  {
    Client c(port_);
    c.Send("GET /stream HTTP/1.1\r\n\r\n");
    auto first = c.Read(2000ms, [](const std::string& s) { return s.size() > 10000; });
    EXPECT_NE(first.find("Transfer-Encoding: chunked"), std::string::npos);
  }  // closed after reading a little of 100 MB
  for (int i = 0; i < 500 && !stream_ended_; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(stream_ended_);
}

TEST_F(HttpServerTest, StopFinishesTheRequestsBeingAnswered) {
  Start();
  Client c(port_);
  c.Send("GET /slow HTTP/1.1\r\n\r\n");
  while (entered_ < 1) std::this_thread::sleep_for(1ms);
  auto stopped = std::async(std::launch::async, [this] { server_->Stop(); });
  std::this_thread::sleep_for(50ms);
  release_ = true;
  auto r = c.Response();
  EXPECT_EQ(StatusOf(r), 200);
  EXPECT_NE(r.find("slow"), std::string::npos);
  stopped.get();
}

// A worker that sent a keep-alive response whole hands the connection back without waking the
// loop; the loop must still treat it as idle: its idle deadline, a graceful stop, and input
// that arrived while the worker was busy.
TEST_F(HttpServerTest, ConnectionsHandedBackByWorkersAreIdle) {
  ServerLimits l;
  l.idle_timeout = 300ms;
  Start(l);
  Client idle(port_);
  idle.Send("GET /hello/a HTTP/1.1\r\n\r\n");
  EXPECT_EQ(StatusOf(idle.Response()), 200);
  EXPECT_EQ(idle.Read(5000ms), "");
  EXPECT_TRUE(idle.closed());  // by the idle deadline, well before the 5 s

  // The next request sent while the first is being answered is read once it is.
  Client eager(port_);
  eager.Send("GET /slow HTTP/1.1\r\n\r\n");
  while (entered_ < 1) std::this_thread::sleep_for(1ms);
  eager.Send("GET /hello/b HTTP/1.1\r\n\r\n");
  std::this_thread::sleep_for(50ms);
  release_ = true;
  auto both = eager.Read(5000ms, [](const std::string& s) { return s.find("hello b") != s.npos; });
  EXPECT_LT(both.find("slow"), both.find("hello b"));

  // A graceful stop closes a served, idle connection at once (not after the drain's grace).
  Client served(port_);
  served.Send("GET /hello/c HTTP/1.1\r\n\r\n");
  EXPECT_EQ(StatusOf(served.Response()), 200);
  auto stopped = std::async(std::launch::async, [this] { server_->Stop(); });
  served.Read(5000ms);
  EXPECT_TRUE(served.closed());
  stopped.get();
}

TEST_F(HttpServerTest, FilesServeOneRangeAtMost) {
  const auto file = std::filesystem::temp_directory_path() / "outpost-range-test";
  {
    std::ofstream out(file, std::ios::binary);
    for (int i = 0; i < 100000; ++i) out.put(static_cast<char>('a' + i % 26));
  }
  server_ = std::make_unique<Server>();
  server_->Route("GET", "/f", [&](const Request& r, Response& res) { ServeFile(file, r, res); });
  server_->Route("GET", "/missing", [&](const Request& r, Response& res) {
    ServeFile(file.string() + ".none", r, res);
  });
  port_ = server_->Bind("127.0.0.1", 0);
  server_->Start();
  Client c(port_);
  c.Send("GET /f HTTP/1.1\r\nRange: bytes=26-51\r\n\r\n");
  auto r = c.Response();
  EXPECT_EQ(StatusOf(r), 206);
  EXPECT_NE(r.find("Content-Range: bytes 26-51/100000"), std::string::npos);
  EXPECT_EQ(r.substr(r.find("\r\n\r\n") + 4), "abcdefghijklmnopqrstuvwxyz");
  // 2,500 overlapping ranges in a 7.5 KB request: the file once, not 2,500 times.
  std::string ranges = "bytes=0-";
  for (int i = 0; i < 2500; ++i) ranges += ",0-";
  c.Send("GET /f HTTP/1.1\r\nRange: " + ranges + "\r\n\r\n");
  r = c.Response();
  EXPECT_EQ(StatusOf(r), 200);
  EXPECT_EQ(r.size() - r.find("\r\n\r\n") - 4, 100000u);
  c.Send("GET /f HTTP/1.1\r\nRange: bytes=200000-\r\n\r\n");
  EXPECT_EQ(StatusOf(c.Response()), 416);
  c.Send("GET /missing HTTP/1.1\r\n\r\n");
  EXPECT_EQ(StatusOf(c.Response()), 404);
  std::filesystem::remove(file);
}

}  // namespace
}  // namespace outpost::http
