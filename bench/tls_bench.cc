// What TLS costs the gRPC and HTTP front ends: two agents on the same models, one plaintext
// and one with TLS (a P-256 certificate made here with the openssl command), and
//   - a new connection's first call (connect, handshake, HTTP/2 setup, ServerLive), plain vs
//     TLS, and TLS again with a client session cache (resumption, where the server offers it);
//   - throughput of 16 clients, each on its own connection, calling ModelInfer on add_mul;
//   - the same over HTTP/1.1 (OpenSSL's client): a new connection's GET /v2/health/live, full
//     and resumed handshakes, and 16 keep-alive clients on health and on a JSON infer.
// Usage: tls_bench --outpostd build/bin/outpostd --fixtures build/test-fixtures [--seconds S]
#include <arpa/inet.h>
#include <grpc/grpc_security.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "grpc_service.grpc.pb.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Run(const std::string& command) {
  if (std::system(command.c_str()) != 0) throw std::runtime_error("failed: " + command);
}

struct Agent {
  pid_t pid = -1;
  int port;
  Agent(const std::string& bin, const fs::path& repo, const fs::path& auth, int http, int grpc,
        std::vector<std::string> extra)
      : port(grpc) {
    std::vector<std::string> args = {bin,
                                     "--model-repository",
                                     repo.string(),
                                     "--http-port",
                                     std::to_string(http),
                                     "--grpc-port",
                                     std::to_string(grpc),
                                     "--allow-unsigned-models",
                                     "--log-level",
                                     "warn",
                                     "--auth-dir",
                                     auth.string(),
                                     "--repository-poll-secs",
                                     "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid, bin.c_str(), nullptr, nullptr, argv.data(), environ) != 0)
      throw std::runtime_error("spawn");
  }
  ~Agent() {
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
  }
};

std::shared_ptr<grpc::Channel> Connect(int port, const std::string& ca,
                                       grpc_ssl_session_cache* cache) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a new connection every time
  if (cache) {
    grpc_arg arg = grpc_ssl_session_cache_create_channel_arg(cache);
    args.SetPointerWithVtable(arg.key, arg.value.pointer.p, arg.value.pointer.vtable);
  }
  if (ca.empty())
    return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                     grpc::InsecureChannelCredentials(), args);
  // Made once: building credentials parses the roots and sets up a TLS context, which is the
  // client's cost, not the handshake's.
  static std::shared_ptr<grpc::ChannelCredentials> creds = [&] {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ca;
    return grpc::SslCredentials(o);
  }();
  // The same address as plaintext (no name to resolve); the certificate's name checked.
  args.SetSslTargetNameOverride("localhost");
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), creds, args);
}

bool Live(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  inference::ServerLiveRequest req;
  inference::ServerLiveResponse res;
  return stub->ServerLive(&ctx, req, &res).ok();
}

void WaitLive(int port, const std::string& ca) {
  for (int i = 0; i < 600; ++i) {
    if (Live(Connect(port, ca, nullptr))) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("agent did not start");
}

// Median microseconds of a new connection's first call.
double FirstCall(int port, const std::string& ca, grpc_ssl_session_cache* cache, int n) {
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    if (!Live(Connect(port, ca, cache))) throw std::runtime_error("call failed");
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

double Throughput(int port, const std::string& ca, int clients, double seconds) {
  std::atomic<uint64_t> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&] {
      auto stub = inference::GRPCInferenceService::NewStub(Connect(port, ca, nullptr));
      inference::ModelInferRequest req;
      req.set_model_name("add_mul");
      std::string raw(16, '\0');
      for (const char* name : {"a", "b"}) {
        auto* in = req.add_inputs();
        in->set_name(name);
        in->set_datatype("FP32");
        in->add_shape(1);
        in->add_shape(4);
        req.add_raw_input_contents(raw);
      }
      while (!stop) {
        grpc::ClientContext ctx;
        inference::ModelInferResponse res;
        if (stub->ModelInfer(&ctx, req, &res).ok()) done++;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  return static_cast<double>(done) / seconds;
}

// ---- HTTP/1.1, plain or over OpenSSL ----------------------------------------------------------

// One client connection: TLS when `ctx` is set.
class HttpConn {
 public:
  HttpConn(int port, SSL_CTX* ctx, SSL_SESSION* resume = nullptr) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int yes = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("connect");
    if (!ctx) return;
    ssl_ = SSL_new(ctx);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, "localhost");
    SSL_set1_host(ssl_, "localhost");
    if (resume) SSL_set_session(ssl_, resume);
    if (SSL_connect(ssl_) != 1) throw std::runtime_error("TLS handshake failed");
  }
  ~HttpConn() {
    if (ssl_) {
      SSL_shutdown(ssl_);  // a session ended without close_notify is not resumable
      SSL_free(ssl_);
    }
    ::close(fd_);
  }
  bool resumed() const { return ssl_ && SSL_session_reused(ssl_); }
  SSL_SESSION* session() const { return ssl_ ? SSL_get1_session(ssl_) : nullptr; }

  // Sends `request` and reads one response whole; its status.
  int Call(const std::string& request) {
    if (Write(request.data(), request.size()) != static_cast<ssize_t>(request.size()))
      throw std::runtime_error("write");
    size_t head_end;
    while ((head_end = buf_.find("\r\n\r\n")) == std::string::npos) Fill();
    size_t length = 0;
    if (auto at = buf_.find("Content-Length: "); at != std::string::npos && at < head_end)
      length = std::stoul(buf_.substr(at + 16));
    while (buf_.size() < head_end + 4 + length) Fill();
    int status = std::stoi(buf_.substr(9, 3));
    buf_.erase(0, head_end + 4 + length);
    return status;
  }

 private:
  ssize_t Write(const char* p, size_t n) {
    return ssl_ ? SSL_write(ssl_, p, static_cast<int>(n)) : ::send(fd_, p, n, MSG_NOSIGNAL);
  }
  void Fill() {
    char chunk[16384];
    ssize_t n = ssl_ ? SSL_read(ssl_, chunk, sizeof chunk) : ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) throw std::runtime_error("connection closed mid-response");
    buf_.append(chunk, static_cast<size_t>(n));
  }
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  std::string buf_;
};

const std::string kHealth = "GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n";

std::string InferRequest() {
  const std::string body =
      R"({"inputs":[{"name":"a","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]},)"
      R"({"name":"b","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]})";
  return "POST /v2/models/add_mul/infer HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
         "application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Median microseconds of a new connection's GET /v2/health/live; with `resume`, offering the
// session of the connection before (counted in *resumed when the server took it).
double HttpFirstCall(int port, SSL_CTX* ctx, bool resume, int n, int* resumed) {
  std::vector<double> us;
  SSL_SESSION* session = nullptr;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    HttpConn c(port, ctx, resume ? session : nullptr);
    if (c.Call(kHealth) != 200) throw std::runtime_error("health failed");
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (resumed && c.resumed()) ++*resumed;
    if (resume) {  // TLS 1.3 tickets come after the handshake: taken once a response was read
      if (session) SSL_SESSION_free(session);
      session = c.session();
    }
  }
  if (session) SSL_SESSION_free(session);
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

double HttpThroughput(int port, SSL_CTX* ctx, const std::string& request, int clients,
                      double seconds) {
  std::atomic<uint64_t> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&] {
      HttpConn c(port, ctx);
      while (!stop)
        if (c.Call(request) == 200) done++;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  return static_cast<double>(done) / seconds;
}

}  // namespace

int main(int argc, char** argv) {
  std::string bin, fixtures;
  double seconds = 5;
  int handshakes = 300;
  CLI::App app{"tls_bench: gRPC over TLS against plaintext"};
  app.add_option("--outpostd", bin)->required();
  app.add_option("--fixtures", fixtures, "build/test-fixtures")->required();
  app.add_option("--seconds", seconds, "Seconds per throughput run");
  app.add_option("--handshakes", handshakes, "New connections per case");
  CLI11_PARSE(app, argc, argv);

  char tmpl[] = "/tmp/outpost-tls-bench-XXXXXX";
  const fs::path dir = mkdtemp(tmpl);
  fs::create_directories(dir / "repo" / "add_mul");
  fs::copy(fs::path(fixtures) / "add_mul", dir / "repo" / "add_mul", fs::copy_options::recursive);
  const std::string d = dir.string();
  Run("cd " + d +
      " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      "-keyout ca.key -out ca.pem -days 1 -subj /CN=bench-ca 2>/dev/null && "
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key "
      "-out server.csr -subj /CN=localhost 2>/dev/null && "
      "printf 'subjectAltName=DNS:localhost\\n' > ext && openssl x509 -req -in server.csr -CA "
      "ca.pem "
      "-CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile ext 2>/dev/null && "
      "chmod 600 server.key");
  const std::string ca = Slurp(dir / "ca.pem");
  const int base = 20000 + getpid() % 5000;
  {
    Agent plain(bin, dir / "repo", dir / "auth1", base, base + 1, {});
    Agent tls(bin, dir / "repo", dir / "auth2", base + 2, base + 3,
              {"--tls-cert-file", d + "/server.pem", "--tls-key-file", d + "/server.key"});
    WaitLive(plain.port, "");
    WaitLive(tls.port, ca);
    grpc_ssl_session_cache* cache = grpc_ssl_session_cache_create_lru(64);
    FirstCall(tls.port, ca, cache, 20);  // warm, and fill the session cache
    const double plain_us = FirstCall(plain.port, "", nullptr, handshakes);
    const double full_us = FirstCall(tls.port, ca, nullptr, handshakes);
    const double resumed_us = FirstCall(tls.port, ca, cache, handshakes);
    grpc_ssl_session_cache_destroy(cache);
    std::printf("a new connection's first call (median of %d, loopback, P-256, TLS 1.3)\n",
                handshakes);
    std::printf("  plaintext             %8.0f us\n", plain_us);
    std::printf("  TLS, full handshake   %8.0f us  (+%.0f us)\n", full_us, full_us - plain_us);
    std::printf("  TLS, session cache    %8.0f us  (+%.0f us)\n\n", resumed_us,
                resumed_us - plain_us);
    const double plain_rps = Throughput(plain.port, "", 16, seconds);
    const double tls_rps = Throughput(tls.port, ca, 16, seconds);
    std::printf("ModelInfer add_mul [1,4] x2, 16 clients on their own connections, %.0f s each\n",
                seconds);
    std::printf("  plaintext %10.0f req/s\n  TLS       %10.0f req/s  (%.3fx)\n\n", plain_rps,
                tls_rps, tls_rps / plain_rps);

    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_load_verify_locations(ctx, (dir / "ca.pem").c_str(), nullptr);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    const int http_plain = base, http_tls = base + 2;
    int resumed = 0;
    const double h_plain = HttpFirstCall(http_plain, nullptr, false, handshakes, nullptr);
    const double h_full = HttpFirstCall(http_tls, ctx, false, handshakes, nullptr);
    const double h_resumed = HttpFirstCall(http_tls, ctx, true, handshakes, &resumed);
    std::printf("HTTP: a new connection's GET /v2/health/live (median of %d)\n", handshakes);
    std::printf("  plaintext             %8.0f us\n", h_plain);
    std::printf("  TLS, full handshake   %8.0f us  (+%.0f us)\n", h_full, h_full - h_plain);
    std::printf("  TLS, resumed          %8.0f us  (+%.0f us; %d of %d resumed)\n\n", h_resumed,
                h_resumed - h_plain, resumed, handshakes);
    const std::string infer = InferRequest();
    for (const auto& [name, request] :
         {std::pair{"GET /v2/health/live", kHealth}, std::pair{"POST infer (JSON)", infer}}) {
      const double p = HttpThroughput(http_plain, nullptr, request, 16, seconds);
      const double t = HttpThroughput(http_tls, ctx, request, 16, seconds);
      std::printf("HTTP %s, 16 keep-alive clients, %.0f s each\n", name, seconds);
      std::printf("  plaintext %10.0f req/s\n  TLS       %10.0f req/s  (%.3fx)\n", p, t, t / p);
    }
    SSL_CTX_free(ctx);
  }
  fs::remove_all(dir);
  return 0;
}
