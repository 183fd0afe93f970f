// What checking an API key costs a request. Prints per-call percentiles of
//   the check alone: PresentedKey + Authorize, as the HTTP and gRPC front ends call it, for an
//     anonymous caller on an open scope (the baseline), a valid key, a wrong key, a revoked key;
//   a request end to end: GET over one keep-alive loopback connection to an http::Server with
//     the same admission check, without a credential and with a valid key.
// Usage: auth_bench [--iterations N]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "auth/api_keys.h"
#include "auth/authorizer.h"
#include "core/logging.h"
#include "http/server.h"

namespace {

using namespace outpost;
using Clock = std::chrono::steady_clock;

struct Percentiles {
  double p50, p99;
};

Percentiles Of(std::vector<double> ns) {
  std::sort(ns.begin(), ns.end());
  return {ns[ns.size() / 2], ns[ns.size() * 99 / 100]};
}

template <typename F>
Percentiles Time(int n, F&& f) {
  std::vector<double> ns;
  ns.reserve(n);
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    f();
    ns.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count());
  }
  return Of(std::move(ns));
}

// One keep-alive connection sending `request` and reading each whole response.
class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("connect");
    int yes = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
  }
  ~Client() { ::close(fd_); }
  int Roundtrip(const std::string& request) {
    if (::send(fd_, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size()))
      throw std::runtime_error("send");
    std::string in;
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) throw std::runtime_error("recv");
      in.append(buf, static_cast<size_t>(n));
      size_t end = in.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      size_t cl = in.find("Content-Length: ");
      size_t length = cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16));
      if (in.size() >= end + 4 + length) return std::stoi(in.substr(9, 3));
    }
  }

 private:
  int fd_;
};

}  // namespace

int main(int argc, char** argv) {
  int iterations = 200000;
  CLI::App app{"auth_bench: the cost of the API key check"};
  app.add_option("--iterations", iterations, "Checks per case");
  CLI11_PARSE(app, argc, argv);

  SetLogLevel("error");  // a thousand "key created" lines say nothing here
  char tmpl[] = "/tmp/outpost-auth-bench-XXXXXX";
  const std::filesystem::path dir = ::mkdtemp(tmpl);
  auth::ApiKeyStore store(dir);
  for (int i = 0; i < 1000; ++i) store.Create("filler", auth::kAllScopes);  // a busy device
  const std::string key = store.Create("bench", auth::kAllScopes).key;
  auto revoked = store.Create("revoked", auth::kAllScopes);
  store.Revoke(revoked.info.id);
  const std::string bearer = "Bearer " + key,
                    wrong = "Bearer opk_000000000000_" + std::string(64, '0');
  const std::string revoked_bearer = "Bearer " + revoked.key;
  const auth::Scopes open = auth::Scope::kInference | auth::Scope::kObserve;
  const auth::Scopes accepted = static_cast<auth::Scopes>(auth::Scope::kInference);

  std::printf("the check alone (%d calls each, 1000 keys in the store)\n", iterations);
  std::printf("  %-28s %10s %10s\n", "case", "p50 ns", "p99 ns");
  auto row = [&](const char* name, const std::string& authorization) {
    bool ok = false;
    Percentiles p = Time(iterations, [&] {
      ok = auth::Authorize(&store, auth::PresentedKey(authorization, ""), open, accepted).allowed;
    });
    std::printf("  %-28s %10.0f %10.0f  %s\n", name, p.p50, p.p99, ok ? "admitted" : "refused");
    return p;
  };
  Percentiles anonymous = row("anonymous (baseline)", "");
  Percentiles valid = row("valid key", bearer);
  row("wrong key", wrong);
  row("revoked key", revoked_bearer);
  std::printf("  added by a valid key: %.0f ns p50\n\n", valid.p50 - anonymous.p50);

  http::Server server;
  server.Route("GET", "/v2/health/live",
               [](const http::Request&, http::Response& res) { res.Set("{}", "application/json"); },
               {.access = accepted});
  server.Admit([&](http::Request& req, const http::RouteOptions& route) -> http::Refusal {
    auto d = auth::Authorize(
        &store, auth::PresentedKey(req.Header("Authorization"), req.Header("X-Api-Key")), open,
        route.access);
    if (d.allowed) return {};
    return {401, d.message, {}};
  });
  const int port = server.Bind("127.0.0.1", 0);
  server.Start();
  const int requests = std::max(2000, iterations / 20);
  std::printf("a request end to end (GET, one keep-alive loopback connection, %d requests)\n",
              requests);
  auto e2e = [&](const char* name, const std::string& extra) {
    Client client(port);
    const std::string request =
        "GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + "\r\n";
    for (int i = 0; i < 500; ++i) client.Roundtrip(request);  // warm
    int status = 0;
    Percentiles p = Time(requests, [&] { status = client.Roundtrip(request); });
    std::printf("  %-28s %10.1f %10.1f us  (%d)\n", name, p.p50 / 1000, p.p99 / 1000, status);
    return p;
  };
  Percentiles plain = e2e("no credential", "");
  // As many header bytes, checked by nothing: what a longer request costs on its own.
  Percentiles padded = e2e("same bytes, no credential",
                           "X-Padding: " + std::string(bearer.size() + 4, 'x') + "\r\n");
  Percentiles keyed = e2e("valid key", "Authorization: " + bearer + "\r\n");
  std::printf(
      "  added by a valid key: %.1f us p50 (%.3fx) over no credential, %.1f us over as many "
      "bytes\n",
      (keyed.p50 - plain.p50) / 1000, keyed.p50 / plain.p50, (keyed.p50 - padded.p50) / 1000);
  server.Stop();
  std::filesystem::remove_all(dir);
  return 0;
}
