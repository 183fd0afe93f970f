#include "http/server.h"

#include "http/tls_context.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/logging.h"
#include "core/memory_budget.h"

namespace outpost::http {

std::string JsonErrorBody(const std::string& message) {
  return nlohmann::json{{"error", message}}.dump(-1, ' ', false,
                                                 nlohmann::json::error_handler_t::replace);
}

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kReadChunk = 64u << 10;
constexpr size_t kReadPerTurn = 4 * kReadChunk;  // from one connection per loop round
constexpr auto kTick = std::chrono::milliseconds(100);
constexpr auto kLinger = std::chrono::seconds(2);
constexpr uint64_t kListenKey = 0, kWakeKey = 1, kUnixListenKey = 2;
constexpr auto kDrainGrace = std::chrono::seconds(30);
constexpr uint64_t kLargeRequest = 4u << 20;
constexpr int kAcceptBatch = 64;

std::vector<std::string> Segments(std::string_view path) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < path.size()) {
    if (path[at] == '/') {
      ++at;
      continue;
    }
    size_t end = path.find('/', at);
    if (end == std::string_view::npos) end = path.size();
    out.emplace_back(path.substr(at, end - at));
    at = end;
  }
  return out;
}

struct RouteEntry {
  std::string method;
  std::vector<std::string> pattern;
  Handler handler;
  RouteOptions options;

  // Matches the path's segments; fills {name} parameters.
  bool Matches(const std::vector<std::string>& segments,
               std::map<std::string, std::string>* params) const {
    if (segments.size() != pattern.size()) return false;
    for (size_t i = 0; i < pattern.size(); ++i) {
      const std::string& p = pattern[i];
      if (p.size() > 2 && p.front() == '{' && p.back() == '}') {
        if (params) (*params)[p.substr(1, p.size() - 2)] = segments[i];
      } else if (p != segments[i]) {
        return false;
      }
    }
    return true;
  }
};

enum class State { kIdle, kHead, kBody, kDispatched, kLingering };

struct Conn {
  int fd = -1;
  uint64_t id = 0;  // the epoll key: a descriptor number is reused, an id never is
  std::weak_ptr<Conn> self;
  std::string remote;
  bool local_socket = false;  // a Unix socket: the peer's credentials below
  uint32_t peer_uid = 0, peer_gid = 0;
  // TLS: every SSL call is made under `mu` (the loop reads, a worker may write).
  SSL* ssl = nullptr;
  bool handshaking = false;
  bool handshake_queued = false;  // with a handshake thread; owned by the loop
  int handshake_step = 0;         // the thread's last SSL_do_handshake outcome (under mu)
  std::string tls_subject;        // a verified client certificate's
  // Owned by the event loop.
  State state = State::kIdle;
  std::string in;
  size_t scanned = 0;
  Clock::time_point deadline;
  Clock::time_point request_start;
  bool reserve_only = false;
  RequestHead head;
  const RouteEntry* route = nullptr;
  uint64_t max_body = 0;
  ChunkedDecoder chunked;
  uint64_t body_charge = 0;  // bytes of this request's body charged to the in-flight budget
  bool close_after = false;
  uint32_t interest = 0;
  bool shut_down = false;
  uint64_t served = 0;  // responses completed on this connection

  // Shared with the worker answering it.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> out;
  size_t out_offset = 0;  // into out.front()
  size_t out_bytes = 0;   // unsent bytes in out
  std::shared_ptr<FileBody> file;
  uint64_t file_sent = 0;
  bool response_done = false;
  bool closed = false;
  bool notify_pending = false;
  // A keep-alive response sent whole by its worker, with nothing read ahead of it, needs
  // nothing from the loop: the worker hands the connection back without waking the loop, and
  // the loop makes it idle when it next looks at it (HandBack()).
  bool may_hand_back = false;
  bool handed_back = false;
  uint64_t response_charge = 0;
  Clock::time_point last_progress;
};

using ConnPtr = std::shared_ptr<Conn>;

struct Job {
  ConnPtr conn;
  Request request;
  const RouteEntry* route = nullptr;
  uint64_t charge = 0;
  bool keep_alive = true;
  bool head_only = false;
};

// Jobs wake the worker that went idle last (a stack, not a condition variable's queue): under
// light load the same few threads, with their caches and ONNX Runtime's per-thread state warm,
// take every request, instead of each request waking the coldest of many.
class JobQueue {
 public:
  bool Push(Job job, size_t max) {
    std::lock_guard lock(mu_);
    if (stopped_ || jobs_.size() >= max) return false;
    jobs_.push_back(std::move(job));
    if (!idle_.empty()) {
      Idle* worker = idle_.back();
      idle_.pop_back();
      worker->woken = true;
      worker->cv.notify_one();
    }
    return true;
  }
  bool Pop(Job& job) {
    std::unique_lock lock(mu_);
    while (!stopped_ && jobs_.empty()) {
      Idle self;  // off idle_ before anyone sets `woken`: it never outlives its place there
      idle_.push_back(&self);
      self.cv.wait(lock, [&] { return self.woken; });
    }
    if (jobs_.empty()) return false;
    job = std::move(jobs_.front());
    jobs_.pop_front();
    return true;
  }
  std::deque<Job> Stop() {
    std::lock_guard lock(mu_);
    stopped_ = true;
    for (Idle* worker : idle_) {
      worker->woken = true;
      worker->cv.notify_one();
    }
    idle_.clear();
    return std::move(jobs_);
  }

 private:
  struct Idle {
    std::condition_variable cv;
    bool woken = false;
  };
  std::mutex mu_;
  std::deque<Job> jobs_;
  std::vector<Idle*> idle_;
  bool stopped_ = false;
};

// TLS handshakes run here, not on the event loop: a full handshake costs a millisecond of
// signing and key agreement, and a flood of them would otherwise hold up every established
// connection's requests behind it. One step per connection is queued at a time (first come,
// first served), so the flood waits its turn with the other new clients while the loop goes on.
class HandshakeThreads {
 public:
  using Step = std::function<void(const std::weak_ptr<Conn>&)>;
  void Start(int threads, Step step) {
    step_ = std::move(step);
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  void Push(std::weak_ptr<Conn> c) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(c));
    }
    cv_.notify_one();
  }
  void Stop() {
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void Run() {
    while (true) {
      std::weak_ptr<Conn> c;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopped_ || !queue_.empty(); });
        if (stopped_) return;
        c = std::move(queue_.front());
        queue_.pop_front();
      }
      step_(c);
    }
  }
  Step step_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::weak_ptr<Conn>> queue_;
  bool stopped_ = false;
  std::vector<std::thread> threads_;
};

std::string FormatHead(int status, const Headers& headers, const std::string* length, bool chunked,
                       bool close, int version_minor) {
  std::string head;
  head.reserve(256);
  head += version_minor == 0 ? "HTTP/1.0 " : "HTTP/1.1 ";
  head += std::to_string(status);
  head += ' ';
  head += StatusText(status);
  head += "\r\n";
  for (const auto& [k, v] : headers.fields()) {
    if (EqualsIgnoreCase(k, "Content-Length") || EqualsIgnoreCase(k, "Transfer-Encoding") ||
        EqualsIgnoreCase(k, "Connection"))
      continue;
    // A handler's header value never splits the response.
    if (v.find_first_of("\r\n") != std::string::npos) continue;
    head += k;
    head += ": ";
    head += v;
    head += "\r\n";
  }
  if (length) head += "Content-Length: " + *length + "\r\n";
  if (chunked) head += "Transfer-Encoding: chunked\r\n";
  if (close) {
    head += "Connection: close\r\n";
  } else if (version_minor == 0) {
    head += "Connection: keep-alive\r\n";
  }
  head += "\r\n";
  return head;
}

}  // namespace

class Server::Impl {
 public:
  explicit Impl(const ServerLimits& limits)
      : limits_(limits),
        own_budget_(limits.budget ? nullptr
                                  : std::make_unique<MemoryBudget>(limits.max_inflight_bytes)),
        budget_(limits.budget ? limits.budget : own_budget_.get()) {}
  ~Impl() { Stop(); }

  void Route(std::string method, std::string pattern, Handler handler, RouteOptions options) {
    if (options.max_body == 0) options.max_body = limits_.default_max_body;
    routes_.push_back(
        {std::move(method), Segments(pattern), std::move(handler), std::move(options)});
  }
  // The first one used runs outermost.
  void Use(Middleware m) {
    if (!middleware_) {
      middleware_ = std::move(m);
      return;
    }
    middleware_ = [outer = std::move(middleware_), inner = std::move(m)](
                      const Request& req, Response& res, const Handler& handler) {
      outer(req, res, [&](const Request& r, Response& s) { inner(r, s, handler); });
    };
  }
  void SetPreflight(Handler h) {
    preflight_.method = "OPTIONS";
    preflight_.handler = std::move(h);
    preflight_.options.max_body = 0;
  }
  void SetErrorBody(ErrorBody b) { error_body_ = std::move(b); }
  void SetTls(std::shared_ptr<TlsContext> tls) { tls_ = std::move(tls); }

  void Admit(Admission a) {
    if (!admission_) {
      admission_ = std::move(a);
      return;
    }
    admission_ = [first = std::move(admission_), then = std::move(a)](Request& req,
                                                                      const RouteOptions& route) {
      Refusal r = first(req, route);
      return r.status != 0 ? r : then(req, route);
    };
  }

  int Bind(const std::string& address, int port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string service = std::to_string(port);
    if (int rc = ::getaddrinfo(address.c_str(), service.c_str(), &hints, &found); rc != 0)
      Fail(ErrorCode::kUnavailable,
           "cannot resolve " + address + ": " + std::string(::gai_strerror(rc)));
    std::string why;
    for (addrinfo* a = found; a && listen_fd_ < 0; a = a->ai_next) {
      int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      // SO_REUSEADDR only: SO_REUSEPORT would let a second process take half the traffic.
      int yes = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 1024) == 0) {
        listen_fd_ = fd;
      } else {
        why = std::strerror(errno);
        ::close(fd);
      }
    }
    ::freeaddrinfo(found);
    if (listen_fd_ < 0) Fail(ErrorCode::kUnavailable, why);
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
    return ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }

  void BindUnix(const std::string& path) {
    sockaddr_un addr{};
    if (path.empty() || path.size() >= sizeof addr.sun_path)
      Fail(ErrorCode::kInvalidArgument, "http: a Unix socket path must be 1.." +
                                            std::to_string(sizeof addr.sun_path - 1) + " bytes");
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    // A socket left by an earlier run is replaced; anything else at the path is not touched.
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        Fail(ErrorCode::kUnavailable, path + " exists and is not a socket");
      ::unlink(path.c_str());
    }
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd, 1024) != 0) {
      std::string why = std::strerror(errno);
      if (fd >= 0) ::close(fd);
      Fail(ErrorCode::kUnavailable, path + ": " + why);
    }
    // Anyone on the machine may connect: what a peer may do follows from its uid and gid,
    // which the kernel vouches for (SO_PEERCRED), not from who could open the file.
    ::chmod(path.c_str(), 0666);
    unix_fd_ = fd;
    unix_path_ = path;
  }

  void Start() {
    if (listen_fd_ < 0 && unix_fd_ < 0)
      Fail(ErrorCode::kFailedPrecondition, "http: Start before Bind");
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd_ < 0 || wake_fd_ < 0)
      Fail(ErrorCode::kInternal, std::string("http: epoll: ") + std::strerror(errno));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenKey;
    if (listen_fd_ >= 0) ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    ev.data.u64 = kUnixListenKey;
    if (unix_fd_ >= 0) ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, unix_fd_, &ev);
    ev.data.u64 = kWakeKey;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    for (int i = 0; i < std::max(1, limits_.worker_threads); ++i)
      workers_.emplace_back([this] { Work(normal_); });
    for (int i = 0; i < std::max(1, limits_.priority_threads); ++i)
      workers_.emplace_back([this] { Work(priority_); });
    if (tls_) {
      // Half the cores at most: a handshake flood leaves the others to requests.
      const int cores = static_cast<int>(std::thread::hardware_concurrency());
      handshakes_.Start(std::clamp(cores / 2, 1, 4),
                        [this](const std::weak_ptr<Conn>& c) { HandshakeStep(c); });
    }
    loop_ = std::thread([this] { Loop(); });
  }

  void Stop() {
    if (stopping_.exchange(true)) return;
    if (loop_.joinable()) {
      Wake();
      loop_.join();
    }
    for (auto* q : {&normal_, &priority_}) {
      for (auto& job : q->Stop()) Release(job.charge);
    }
    for (auto& t : workers_)
      if (t.joinable()) t.join();
    handshakes_.Stop();
    for (int fd : {listen_fd_, unix_fd_, epoll_fd_, wake_fd_})
      if (fd >= 0) ::close(fd);
    listen_fd_ = unix_fd_ = epoll_fd_ = wake_fd_ = -1;
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
  }

  ServerStats Stats() const {
    ServerStats s;
    s.connections = open_.load();
    s.inflight_bytes = budget_->used();
    s.accepted_total = accepted_.load();
    s.evicted_total = evicted_.load();
    s.refused_total = refused_.load();
    s.timed_out_total = timed_out_.load();
    s.overloaded_total = overloaded_.load();
    return s;
  }

  // Called by workers: the connection has output for the loop to send.
  void Notify(Conn& c) {
    // c.mu is held by the caller.
    if (c.notify_pending) return;
    c.notify_pending = true;
    {
      std::lock_guard lock(ready_mu_);
      ready_.push_back(c.self);
    }
    Wake();
  }

  void Charge(uint64_t n) { budget_->Charge(n); }
  void Release(uint64_t n) { budget_->Release(n); }
  const ServerLimits& limits() const { return limits_; }

 private:
  class Writer;

  void Wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }

  // ---- the event loop ---------------------------------------------------------------------

  void Loop() {
    std::vector<epoll_event> events(256);
    auto next_tick = Clock::now() + kTick;
    Clock::time_point drain_deadline{};
    while (true) {
      if (stopping_ && !draining_) {
        // Graceful stop: no new connections or requests; requests already being answered
        // finish (within kDrainGrace) and their connections close after the response.
        draining_.store(true);  // before Dispatched() looks: see Answer()
        drain_deadline = Clock::now() + kDrainGrace;
        for (int fd : {listen_fd_, unix_fd_})
          if (fd >= 0) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
        std::vector<ConnPtr> idle;
        for (auto& [id, c] : conns_)
          if (!Dispatched(*c)) idle.push_back(c);
        for (auto& c : idle) Close(*c);
      }
      if (draining_ && (Clock::now() >= drain_deadline ||
                        std::all_of(conns_.begin(), conns_.end(),
                                    [](const auto& e) { return e.second->shut_down; })))
        break;
      int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                           again_.empty() ? static_cast<int>(kTick.count()) : 0);
      if (n < 0 && errno != EINTR) break;
      // Finished responses first: their connections are then ready for the next request that
      // may be reported in this same batch.
      std::partition(events.begin(), events.begin() + std::max(n, 0),
                     [](const epoll_event& e) { return e.data.u64 == kWakeKey; });
      for (int i = 0; i < n; ++i) {
        const uint64_t key = events[i].data.u64;
        if (key == kListenKey || key == kUnixListenKey) {
          if (draining_) continue;
          Accept(key == kListenKey ? listen_fd_ : unix_fd_);
        } else if (key == kWakeKey) {
          uint64_t count;
          [[maybe_unused]] ssize_t r = ::read(wake_fd_, &count, sizeof count);
          DrainReady();
        } else if (auto it = conns_.find(key); it != conns_.end()) {
          ConnPtr c = it->second;  // keeps it alive through Close()
          const uint32_t ev = events[i].events;
          if (ev & (EPOLLERR | EPOLLHUP)) {
            Close(*c);
            continue;
          }
          if (ev & EPOLLIN) OnReadable(*c);
          if ((ev & EPOLLOUT) && c->fd >= 0) {
            if (c->handshaking)
              OnReadable(*c);
            else
              Flush(*c);
          }
        }
      }
      ReadAgain();
      if (Clock::now() >= next_tick) {
        CheckDeadlines();
        next_tick = Clock::now() + kTick;
      }
    }
    // Stopping: every connection ends; a worker writing to one sees it closed.
    std::vector<ConnPtr> all;
    for (auto& [id, c] : conns_) all.push_back(c);
    for (auto& c : all) Close(*c);
  }

  void DrainReady() {
    std::vector<std::weak_ptr<Conn>> ready, shaken;
    {
      std::lock_guard lock(ready_mu_);
      ready.swap(ready_);
      shaken.swap(shaken_);
    }
    for (auto& weak : shaken) {
      ConnPtr c = weak.lock();
      if (c && c->fd >= 0) HandshakeStepped(*c);
    }
    for (auto& weak : ready) {
      ConnPtr c = weak.lock();
      if (!c || c->fd < 0) continue;
      {
        std::lock_guard lock(c->mu);
        c->notify_pending = false;
      }
      Flush(*c);
    }
  }

  void Accept(int listen_fd) {
    // In batches: the loop's other events (a request waiting on a busy connection) are not
    // starved by a connection flood.
    for (int accepted = 0; accepted < kAcceptBatch; ++accepted) {
      sockaddr_storage addr{};
      socklen_t len = sizeof addr;
      int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE) {
          // Out of descriptors: make room rather than spin on a listener that stays readable.
          if (!Evict()) {
            refused_++;
            return;
          }
          continue;
        }
        return;  // EAGAIN: all taken
      }
      bool reserve_only = false;
      if (conns_.size() >= limits_.max_connections && !Evict()) {
        if (conns_.size() >= limits_.max_connections + limits_.reserved_connections) {
          refused_++;
          if (tls_) {  // a plaintext answer means nothing to a TLS client
            ::close(fd);
            continue;
          }
          static const char kFull[] =
              "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
              "Connection: close\r\n\r\n";
          [[maybe_unused]] ssize_t w = ::send(fd, kFull, sizeof kFull - 1, MSG_NOSIGNAL);
          ::close(fd);
          continue;
        }
        reserve_only = true;
      }
      auto c = std::make_shared<Conn>();
      if (addr.ss_family == AF_UNIX) {
        ucred cred{};
        socklen_t cred_len = sizeof cred;
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0) {
          ::close(fd);
          continue;
        }
        c->local_socket = true;
        c->peer_uid = cred.uid;
        c->peer_gid = cred.gid;
      } else {
        int yes = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
        if (tls_) {
          c->ssl = tls_->NewConnection(fd);
          if (!c->ssl) {
            ::close(fd);
            continue;
          }
          c->handshaking = true;
        }
      }
      c->fd = fd;
      c->id = next_id_++;
      c->self = c;
      c->reserve_only = reserve_only;
      c->remote = c->local_socket ? "unix:uid=" + std::to_string(c->peer_uid) : RemoteAddress(addr);
      // A handshake is held to the time a request head has.
      c->deadline = Clock::now() + (c->handshaking ? limits_.header_timeout : limits_.idle_timeout);
      c->request_start = Clock::now();
      conns_[c->id] = c;
      open_ = conns_.size();
      accepted_++;
      SetInterest(*c, EPOLLIN, /*add=*/true);
    }
  }

  static std::string RemoteAddress(const sockaddr_storage& addr) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (addr.ss_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr).sin_addr, buf, sizeof buf);
    } else if (addr.ss_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(addr).sin6_addr, buf,
                  sizeof buf);
    }
    return buf;
  }

  // Closes one connection to make room: an idle or closing one first, then the unfinished
  // request that started longest ago. Never one whose request a worker is answering.
  bool Evict() {
    for (int tries = 0; tries < 8; ++tries) {
      Conn* victim = nullptr;
      int victim_rank = 4;
      for (auto& [id, c] : conns_) {
        Dispatched(*c);  // one handed back is idle
        // Closing anyway; then connections that never sent a request; then unfinished
        // requests; last, idle keep-alive connections of clients already served (the older
        // first in each); never one a worker is answering.
        const bool idle = c->state == State::kIdle;
        const bool partial = c->state == State::kHead || c->state == State::kBody;
        int rank = c->state == State::kLingering ? 0
                   : idle && c->served == 0      ? 1
                   : partial                     ? 2
                   : idle                        ? 3
                                                 : 4;
        if (rank == 4) continue;
        if (rank < victim_rank ||
            (rank == victim_rank && c->request_start < victim->request_start)) {
          victim = c.get();
          victim_rank = rank;
        }
      }
      if (!victim) return false;
      // "Idle" may only mean that its next request waits in the socket, unread while this
      // loop accepted: that one is a client at work. It starts its request now instead.
      char byte;
      if (victim->state == State::kIdle &&
          ::recv(victim->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
        victim->state = State::kHead;
        victim->request_start = Clock::now();
        victim->deadline = victim->request_start + limits_.header_timeout;
        continue;
      }
      evicted_++;
      Close(*victim);
      return true;
    }
    return false;
  }

  void SetInterest(Conn& c, uint32_t interest, bool add = false) {
    if (!add && c.interest == interest) return;
    epoll_event ev{};
    ev.events = interest;
    ev.data.u64 = c.id;
    ::epoll_ctl(epoll_fd_, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c.fd, &ev);
    c.interest = interest;
  }

  void Close(Conn& c) {
    if (c.fd < 0) return;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
    conns_.erase(c.id);
    open_ = conns_.size();
    Release(c.body_charge);
    c.body_charge = 0;
    std::lock_guard lock(c.mu);
    // Closed under the lock: a worker sends on the descriptor only while it holds the lock and
    // the connection is not closed, so it never writes to a number reused by another client.
    if (c.ssl) {
      SSL_free(c.ssl);
      c.ssl = nullptr;
    }
    ::close(c.fd);
    c.fd = -1;
    c.closed = true;
    Release(c.response_charge);
    c.response_charge = 0;
    c.out.clear();
    c.out_bytes = 0;
    c.file.reset();
    c.cv.notify_all();
  }

  // Reads what the client sent (decrypted, with TLS): bytes, 0 at its end, -1 with errno
  // (EAGAIN: nothing more now).
  ssize_t Receive(Conn& c, char* buf, size_t size) {
    if (!c.ssl) return ::recv(c.fd, buf, size, 0);
    std::lock_guard lock(c.mu);
    ERR_clear_error();
    int n = SSL_read(c.ssl, buf, static_cast<int>(size));
    if (n > 0) return n;
    switch (SSL_get_error(c.ssl, n)) {
      case SSL_ERROR_WANT_READ:
      case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
      case SSL_ERROR_ZERO_RETURN:
        return 0;
      default:
        errno = ECONNRESET;
        return -1;
    }
  }

  // Hands the next step of a TLS handshake to a handshake thread; the connection is not
  // watched meanwhile (but for errors and hang-ups, which close it).
  void QueueHandshake(Conn& c) {
    if (c.handshake_queued) return;
    c.handshake_queued = true;
    SetInterest(c, 0);
    handshakes_.Push(c.self);
  }

  // On a handshake thread.
  void HandshakeStep(const std::weak_ptr<Conn>& weak) {
    ConnPtr c = weak.lock();
    if (!c) return;
    {
      std::lock_guard lock(c->mu);
      if (c->closed || !c->ssl) return;
      ERR_clear_error();
      int rc = SSL_do_handshake(c->ssl);
      c->handshake_step = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, rc);
      if (rc == 1) c->tls_subject = TlsContext::PeerSubject(c->ssl);
    }
    {
      std::lock_guard lock(ready_mu_);
      shaken_.push_back(weak);
    }
    Wake();
  }

  // Back on the loop: what the step needs next.
  void HandshakeStepped(Conn& c) {
    c.handshake_queued = false;
    int step;
    {
      std::lock_guard lock(c.mu);
      step = c.handshake_step;
    }
    if (step == SSL_ERROR_NONE) {
      c.handshaking = false;
      c.deadline = Clock::now() + limits_.idle_timeout;
      SetInterest(c, EPOLLIN);
      again_.push_back(c.id);  // the request may have come with the handshake's last flight
    } else if (step == SSL_ERROR_WANT_READ) {
      SetInterest(c, EPOLLIN);
    } else if (step == SSL_ERROR_WANT_WRITE) {
      SetInterest(c, EPOLLIN | EPOLLOUT);
    } else {
      Close(c);  // not TLS, a certificate we do not trust, or a broken link
    }
  }

  // TLS keeps decrypted bytes the socket no longer shows: epoll will not report them, so a
  // connection that stopped reading with some waiting is read again next round.
  bool TlsPending(Conn& c) {
    if (!c.ssl) return false;
    std::lock_guard lock(c.mu);
    return SSL_pending(c.ssl) > 0;
  }

  void ReadAgain() {
    if (again_.empty()) return;
    std::vector<uint64_t> ids;
    ids.swap(again_);
    for (uint64_t id : ids) {
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;
      ConnPtr c = it->second;
      if (c->fd >= 0 && !c->handshaking) OnReadable(*c);
    }
  }

  void OnReadable(Conn& c) {
    if (c.handshaking) {
      QueueHandshake(c);
      return;
    }
    char buf[kReadChunk];
    // Level-triggered: what is left is reported again on the next round, after every other
    // ready connection had its turn; a client sending fast over loopback would otherwise keep
    // the loop on its body (or on discarding one) while the others wait.
    for (size_t read = 0; c.fd >= 0 && read < kReadPerTurn;) {
      if (Dispatched(c, /*input_waits=*/true)) {
        // Input ahead of the response (pipelined, or an attacker's): not read until the
        // response is sent, and not reported again and again meanwhile.
        SetInterest(c, c.interest & ~uint32_t{EPOLLIN});
        return;
      }
      // Never hold more unparsed input than a head may be (a body is consumed as it comes).
      if (c.state != State::kLingering && c.in.size() > limits_.head.max_head_bytes + kReadChunk)
        return;
      ssize_t n = Receive(c, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) Close(c);
        return;
      }
      if (n == 0) {
        Close(c);  // the client is done (or gave up mid-request)
        return;
      }
      read += static_cast<size_t>(n);
      if (c.state == State::kLingering) continue;  // draining before the close
      c.in.append(buf, static_cast<size_t>(n));
      Process(c);
    }
    if (c.fd >= 0 && TlsPending(c)) again_.push_back(c.id);
  }

  // Advances the request on `c` as far as its buffered input allows.
  void Process(Conn& c) {
    while (c.fd >= 0) {
      switch (c.state) {
        case State::kIdle:
          if (c.in.empty()) return;
          if (draining_) {
            Close(c);
            return;
          }
          c.state = State::kHead;
          c.request_start = Clock::now();
          c.deadline = c.request_start + limits_.header_timeout;
          c.scanned = 0;
          break;
        case State::kHead:
          if (!ReadHead(c)) return;
          break;
        case State::kBody:
          if (!ReadBody(c)) return;
          break;
        case State::kDispatched:
        case State::kLingering:
          return;
      }
    }
  }

  bool ReadHead(Conn& c) {
    size_t end = FindHeadEnd(c.in, c.scanned);
    if (end == std::string::npos) {
      if (c.in.size() > limits_.head.max_head_bytes)
        Refuse(c, 431,
               "the request head is larger than " + std::to_string(limits_.head.max_head_bytes) +
                   " bytes");
      return false;
    }
    c.head = RequestHead{};
    ParseError error;
    bool ok = ParseHead(std::string_view(c.in).substr(0, end), limits_.head, c.head, error);
    c.in.erase(0, end);
    c.scanned = 0;
    if (!ok) {
      Refuse(c, error.status, error.message);
      return false;
    }
    c.head.request.remote_addr = c.remote;
    c.head.request.local_socket = c.local_socket;
    c.head.request.peer_uid = c.peer_uid;
    c.head.request.peer_gid = c.peer_gid;
    c.head.request.tls_subject = c.tls_subject;
    const std::string& method = c.head.request.method;
    const bool head_request = method == "HEAD";
    const auto segments = Segments(c.head.request.path);
    c.route = nullptr;
    bool path_known = false;
    for (const auto& r : routes_) {
      if (!r.Matches(segments, nullptr)) continue;
      path_known = true;
      if (r.method == method || (head_request && r.method == "GET")) {
        c.route = &r;
        r.Matches(segments, &c.head.request.path_params);
        break;
      }
    }
    if (!c.route && path_known && method == "OPTIONS" && preflight_.handler)
      c.route = &preflight_;  // a CORS preflight for a path that exists
    if (!c.route) {
      Refuse(c, path_known ? 405 : 404,
             path_known ? "method " + method + " is not allowed here" : "no such endpoint");
      return false;
    }
    if (c.reserve_only && !c.route->options.priority) {
      overloaded_++;
      Refuse(c, 503, "too many connections; try again shortly");
      return false;
    }
    if (admission_) {
      Refusal refusal = admission_(c.head.request, c.route->options);
      if (refusal.status != 0) {
        Refuse(c, refusal.status, refusal.message, refusal.headers);
        return false;
      }
    }
    c.max_body = c.route->options.max_body;
    if (c.head.body == RequestHead::Body::kLength) {
      if (c.head.content_length > c.max_body) {
        Refuse(c, 413,
               "the request body is larger than " + std::to_string(c.max_body) +
                   " bytes, the limit of " + c.head.request.path);
        return false;
      }
      // The whole declared length is reserved now: heads arriving together cannot each find
      // room that only one of their bodies will fit in.
      if (!budget_->TryCharge(c.head.content_length)) {
        overloaded_++;
        Refuse(c, 503, "the server is holding as much request data as it may; retry shortly");
        return false;
      }
      c.body_charge = c.head.content_length;
      c.head.request.body.reserve(static_cast<size_t>(c.head.content_length));
    }
    if (c.head.body == RequestHead::Body::kNone) {
      Dispatch(c);
      return true;
    }
    c.chunked = ChunkedDecoder{};
    const uint64_t expected =
        c.head.body == RequestHead::Body::kLength ? c.head.content_length : c.max_body;
    const auto allowance = std::chrono::milliseconds(
        limits_.min_body_rate ? expected * 1000 / limits_.min_body_rate : 0);
    c.deadline = Clock::now() + limits_.body_timeout + allowance;
    c.state = State::kBody;
    if (c.head.expect_continue) Send(c, "HTTP/1.1 100 Continue\r\n\r\n");
    return true;
  }

  bool ReadBody(Conn& c) {
    std::string& body = c.head.request.body;
    const size_t before = body.size();
    bool done = false;
    if (c.head.body == RequestHead::Body::kLength) {
      size_t take =
          static_cast<size_t>(std::min<uint64_t>(c.head.content_length - body.size(), c.in.size()));
      body.append(c.in, 0, take);
      c.in.erase(0, take);
      done = body.size() == c.head.content_length;
    } else {
      size_t consumed = 0;
      ParseError error;
      auto r = c.chunked.Feed(c.in, consumed, body, c.max_body, error);
      c.in.erase(0, consumed);
      if (r == ChunkedDecoder::Result::kError) {
        Refuse(c, error.status, error.message);
        return false;
      }
      done = r == ChunkedDecoder::Result::kDone;
    }
    // A chunked body is charged as it grows (a declared length was reserved with the head).
    const uint64_t added = body.size() - before;
    if (added > 0 && c.head.body == RequestHead::Body::kChunked) {
      if (!budget_->TryCharge(added)) {
        overloaded_++;
        Refuse(c, 503, "the server is holding as much request data as it may; retry shortly");
        return false;
      }
      c.body_charge += added;
    }
    if (!done) return false;
    Dispatch(c);
    return true;
  }

  void Dispatch(Conn& c) {
    Job job;
    job.conn = c.self.lock();
    job.request = std::move(c.head.request);
    job.route = c.route;
    job.charge = c.body_charge;
    job.keep_alive = c.head.keep_alive && !c.reserve_only;
    job.head_only = job.request.method == "HEAD";
    c.body_charge = 0;
    c.close_after = !job.keep_alive;
    c.state = State::kDispatched;
    {
      std::lock_guard lock(c.mu);
      c.response_done = false;
      c.file_sent = 0;
      // With TLS, input may wait inside the session where the hand-back would not look.
      c.may_hand_back = c.in.empty() && job.keep_alive && !(c.ssl && SSL_pending(c.ssl) > 0);
      c.handed_back = false;
    }
    // EPOLLIN stays: a client that waits for its answer sends nothing meanwhile, and leaving
    // the interest alone spares two epoll_ctl calls per request (OnReadable drops it otherwise).
    JobQueue& q = c.route->options.priority ? priority_ : normal_;
    const uint64_t charge = job.charge;
    const int version_minor = job.request.version_minor;
    if (!q.Push(std::move(job), limits_.max_queued)) {
      Release(charge);
      overloaded_++;
      c.state = State::kHead;  // so that Refuse answers it
      c.head.request.version_minor = version_minor;
      Refuse(c, 503, "the server is busy; retry shortly");
    }
  }

  // Answers `status` from the loop itself and closes the connection after it (the rest of the
  // request is never read).
  // A refusal of a request without a body (404, 405) keeps a keep-alive connection open.
  void Refuse(Conn& c, int status, const std::string& message,
              const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    if (status == 408) timed_out_++;
    Request& r = c.head.request;
    const bool keep = (status == 404 || status == 405 || status == 401 || status == 403) &&
                      c.state == State::kHead && c.head.body == RequestHead::Body::kNone &&
                      c.head.keep_alive && !c.reserve_only;
    Headers h;
    h.Set("Content-Type", "application/json");
    if (status == 503) h.Set("Retry-After", "1");
    for (const auto& [name, value] : headers) h.Set(name, value);
    std::string body = error_body_ ? error_body_(r, status, message) : JsonErrorBody(message);
    const std::string length = std::to_string(body.size());
    std::string head = FormatHead(status, h, &length, false, !keep, r.version_minor);
    Release(c.body_charge);
    c.body_charge = 0;
    if (keep) {
      c.state = State::kDispatched;  // answered: Flush returns it to idle
      c.close_after = false;
    } else {
      c.in.clear();
      c.state = State::kLingering;
      c.close_after = true;
      c.deadline = Clock::now() + kLinger;
    }
    {
      std::lock_guard lock(c.mu);
      c.response_done = true;
      c.out.push_back(std::move(head));
      if (r.method != "HEAD") c.out.push_back(std::move(body));
      for (auto& s : c.out) c.out_bytes += s.size();
      c.last_progress = Clock::now();
    }
    Flush(c);
  }

  void Send(Conn& c, std::string data) {
    {
      std::lock_guard lock(c.mu);
      c.out_bytes += data.size();
      c.out.push_back(std::move(data));
      c.last_progress = Clock::now();
    }
    Flush(c);
  }

  // Sends queued output until it is all gone or the socket is full; false on a broken
  // connection. c.mu is held by the caller: the loop, or a worker sending its own response
  // at once (a hand-over to the loop costs a wake-up, and on a small device the loop's turn on
  // a core can come long after).
  static bool SendQueued(Conn& c) {
    if (c.ssl) return SendQueuedTls(c);
    while (c.out_bytes > 0 && !c.closed) {
      iovec iov[8];
      int count = 0;
      size_t offset = c.out_offset;
      for (auto it = c.out.begin(); it != c.out.end() && count < 8; ++it, offset = 0) {
        iov[count].iov_base = it->data() + offset;
        iov[count].iov_len = it->size() - offset;
        ++count;
      }
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(count);
      ssize_t n = ::sendmsg(c.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
      }
      c.last_progress = Clock::now();
      c.out_bytes -= static_cast<size_t>(n);
      size_t left = static_cast<size_t>(n);
      while (left > 0) {
        size_t in_front = c.out.front().size() - c.out_offset;
        if (left < in_front) {
          c.out_offset += left;
          left = 0;
        } else {
          left -= in_front;
          c.out.pop_front();
          c.out_offset = 0;
        }
      }
    }
    return true;
  }

  // SendQueued over TLS: one record per buffer (c.mu held).
  static bool SendQueuedTls(Conn& c) {
    while (c.out_bytes > 0 && !c.closed && !c.handshaking) {
      const std::string& front = c.out.front();
      ERR_clear_error();
      int n = SSL_write(c.ssl, front.data() + c.out_offset,
                        static_cast<int>(std::min<size_t>(front.size() - c.out_offset, 1u << 20)));
      if (n <= 0) {
        int err = SSL_get_error(c.ssl, n);
        return err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ;
      }
      c.last_progress = Clock::now();
      c.out_bytes -= static_cast<size_t>(n);
      c.out_offset += static_cast<size_t>(n);
      if (c.out_offset == front.size()) {
        c.out.pop_front();
        c.out_offset = 0;
      }
    }
    return true;
  }

  // A file body over TLS: read and written in chunks (sendfile cannot encrypt). c.mu held.
  // False on a broken connection or a file that shrank.
  static bool SendFileTls(Conn& c) {
    char chunk[16384];
    while (c.file_sent < c.file->length) {
      const size_t want =
          static_cast<size_t>(std::min<uint64_t>(c.file->length - c.file_sent, sizeof chunk));
      ssize_t got =
          ::pread(c.file->fd, chunk, want, static_cast<off_t>(c.file->offset + c.file_sent));
      if (got <= 0) return false;
      ERR_clear_error();
      int n = SSL_write(c.ssl, chunk, static_cast<int>(got));
      if (n <= 0) {
        int err = SSL_get_error(c.ssl, n);
        return err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ;
      }
      c.file_sent += static_cast<uint64_t>(n);
      c.last_progress = Clock::now();
    }
    return true;
  }

  // Writes what is pending; when the response is complete, finishes it.
  void Flush(Conn& c) {
    if (c.fd < 0) return;
    bool finished = false, pending = false;
    {
      std::unique_lock lock(c.mu);
      if (!SendQueued(c)) {
        lock.unlock();
        Close(c);
        return;
      }
      if (c.out_bytes < limits_.stream_buffer_bytes) c.cv.notify_all();
      if (c.out_bytes == 0 && c.file && c.ssl) {
        if (!SendFileTls(c)) {
          lock.unlock();
          Close(c);
          return;
        }
        if (c.file_sent == c.file->length) c.file.reset();
      } else if (c.out_bytes == 0 && c.file) {
        while (c.file_sent < c.file->length) {
          off_t offset = static_cast<off_t>(c.file->offset + c.file_sent);
          ssize_t n = ::sendfile(
              c.fd, c.file->fd, &offset,
              static_cast<size_t>(std::min<uint64_t>(c.file->length - c.file_sent, 1u << 20)));
          if (n < 0 && errno == EINTR) continue;
          if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
          if (n <= 0) {  // an error, or the file shrank under us: the response cannot finish
            lock.unlock();
            Close(c);
            return;
          }
          c.file_sent += static_cast<uint64_t>(n);
          c.last_progress = Clock::now();
        }
        if (c.file_sent == c.file->length) c.file.reset();
      }
      pending = c.out_bytes > 0 || c.file;
      finished = !pending && c.response_done;
      // The loop has the connection now: its interest may change below, so it is the loop's
      // to make idle, not the worker's to hand back.
      c.may_hand_back = false;
      c.handed_back = false;
      if (finished) {
        Release(c.response_charge);
        c.response_charge = 0;
      }
    }
    const uint32_t out_interest = pending ? uint32_t{EPOLLOUT} : 0u;
    if (c.state != State::kDispatched && c.state != State::kLingering) {
      SetInterest(c, EPOLLIN | out_interest);  // a 100 Continue on its way
      return;
    }
    if (!finished || c.shut_down) {
      SetInterest(c, out_interest | (c.state == State::kLingering ? uint32_t{EPOLLIN} : 0u));
      return;
    }
    if (c.state == State::kLingering || c.close_after || draining_) {
      // Half-close, then read what the client still sends until it closes too (or kLinger
      // passes): closing with unread input would reset the connection and could destroy the
      // response before the client reads it.
      if (c.ssl) {
        std::lock_guard lock(c.mu);
        SSL_shutdown(c.ssl);  // close_notify, best effort
      }
      ::shutdown(c.fd, SHUT_WR);
      c.shut_down = true;
      c.state = State::kLingering;
      c.deadline = Clock::now() + kLinger;
      SetInterest(c, EPOLLIN);
      return;
    }
    // Keep-alive: the next request may already be buffered (here, or inside TLS).
    BecomeIdle(c, Clock::now());
    SetInterest(c, EPOLLIN);
    if (TlsPending(c)) again_.push_back(c.id);
    Process(c);
  }

  void BecomeIdle(Conn& c, Clock::time_point since) {
    ++c.served;
    c.state = State::kIdle;
    c.deadline = since + limits_.idle_timeout;
    c.request_start = since;
  }

  // Whether a worker still has `c`; one its worker handed back becomes idle here. With
  // `input_waits`, input has arrived: a worker that has not finished must then leave the
  // connection to the loop (which stops reading it until the response is sent).
  bool Dispatched(Conn& c, bool input_waits = false) {
    if (c.state != State::kDispatched) return false;
    std::lock_guard lock(c.mu);
    if (!c.handed_back) {
      if (input_waits) c.may_hand_back = false;
      return true;
    }
    c.handed_back = false;
    BecomeIdle(c, c.last_progress);
    return false;
  }

  void CheckDeadlines() {
    const auto now = Clock::now();
    std::vector<ConnPtr> expired;
    for (auto& [id, c] : conns_) {
      bool late = false;
      switch (c->state) {
        case State::kIdle:
        case State::kHead:
        case State::kBody:
        case State::kLingering:
          late = now >= c->deadline;
          break;
        case State::kDispatched: {
          if (!Dispatched(*c)) {
            late = now >= c->deadline;
            break;
          }
          std::lock_guard lock(c->mu);
          late = (c->out_bytes > 0 || c->file) && now - c->last_progress > limits_.write_timeout;
          break;
        }
      }
      if (late) expired.push_back(c);
    }
    for (auto& c : expired) {
      if (c->fd < 0) continue;
      if (c->state == State::kHead || c->state == State::kBody) {
        Refuse(*c, 408,
               c->state == State::kHead ? "the request head did not arrive in time"
                                        : "the request body did not arrive in time");
      } else {
        if (c->state == State::kDispatched) timed_out_++;
        Close(*c);
      }
    }
  }

  // ---- workers ----------------------------------------------------------------------------

  void Work(JobQueue& q) {
    while (true) {
      Job job;  // a fresh one each time: assigning over a string keeps its buffer
      if (!q.Pop(job)) return;
      Answer(job);
    }
  }

  void Answer(Job& job);

  const ServerLimits limits_;
  std::vector<RouteEntry> routes_;
  RouteEntry preflight_;  // OPTIONS on any known path, when set
  Middleware middleware_;
  ErrorBody error_body_;
  Admission admission_;
  std::shared_ptr<TlsContext> tls_;  // set: TCP connections speak TLS
  std::vector<uint64_t> again_;      // connections with decrypted input epoll cannot see
  int listen_fd_ = -1, unix_fd_ = -1, epoll_fd_ = -1, wake_fd_ = -1;
  std::string unix_path_;
  std::unordered_map<uint64_t, ConnPtr> conns_;  // the loop's, by id
  uint64_t next_id_ = 3;  // 0-2: the TCP listener, the wake fd, the Unix socket listener
  std::mutex ready_mu_;
  std::vector<std::weak_ptr<Conn>> shaken_;  // handshake steps done, for the loop (ready_mu_)
  HandshakeThreads handshakes_;
  std::vector<std::weak_ptr<Conn>> ready_;
  JobQueue normal_, priority_;
  std::vector<std::thread> workers_;
  std::thread loop_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> draining_{false};  // set by the loop; read by workers (Answer())
  std::unique_ptr<MemoryBudget> own_budget_;
  MemoryBudget* budget_;
  std::atomic<uint64_t> open_{0}, accepted_{0}, evicted_{0}, refused_{0}, timed_out_{0},
      overloaded_{0};
};

// A streamed body's producer writes through this on its worker.
class Server::Impl::Writer final : public StreamWriter {
 public:
  Writer(Impl& server, Conn& conn, bool chunked)
      : server_(server), conn_(conn), chunked_(chunked) {}

  bool Write(std::string_view data) override {
    if (data.empty()) return Open();
    std::unique_lock lock(conn_.mu);
    if (conn_.closed) return false;
    std::string piece;
    if (chunked_) {
      char size[24];
      int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
      piece.reserve(static_cast<size_t>(n) + data.size() + 2);
      piece.append(size, static_cast<size_t>(n));
      piece.append(data);
      piece.append("\r\n");
    } else {
      piece.assign(data);
    }
    conn_.out_bytes += piece.size();
    conn_.out.push_back(std::move(piece));
    // Sent from here when the socket takes it; the loop is needed only for what it does not.
    if (!SendQueued(conn_) || conn_.out_bytes > 0) server_.Notify(conn_);
    // Bounded buffering: wait for the client to take what is queued. The loop closes a
    // connection that makes no progress for write_timeout, which wakes this too.
    conn_.cv.wait(lock, [&] {
      return conn_.closed || conn_.out_bytes < server_.limits().stream_buffer_bytes;
    });
    return !conn_.closed;
  }

  bool Open() const override {
    std::lock_guard lock(conn_.mu);
    return !conn_.closed;
  }

 private:
  Impl& server_;
  Conn& conn_;
  bool chunked_;
};

void Server::Impl::Answer(Job& job) {
  Conn& c = *job.conn;
  Response res;
  try {
    const Handler& handler = job.route->handler;
    if (middleware_) {
      middleware_(job.request, res, handler);
    } else {
      handler(job.request, res);
    }
  } catch (const std::exception& e) {
    Log(LogSeverity::kError, "serving", "handler_failed",
        std::string("http handler failed: ") + e.what());
    res = Response{};
    res.status = 500;
    res.Set(error_body_ ? error_body_(job.request, 500, e.what()) : JsonErrorBody(e.what()),
            "application/json");
  }
  const int version_minor = job.request.version_minor;
  const bool head_only = job.head_only;
  // The request's body is done with: its charge passes to the response's. (Moved out and
  // dropped: assigning an empty Request over it would keep the body's buffer allocated.)
  { [[maybe_unused]] Request done = std::move(job.request); }
  Release(job.charge);
  if (job.charge >= kLargeRequest) NoteLargeRequest();
  job.charge = 0;

  const bool streamed = static_cast<bool>(res.stream);
  const bool no_body = res.status == 204 || res.status == 304 || res.status < 200;
  std::string length;
  if (res.file) {
    length = std::to_string(res.file->length);
  } else if (!streamed && !no_body) {
    length = std::to_string(res.body.size());
  } else if (res.status == 304) {
    // RFC 9112 ends a 304 at its head whatever it says; cpp-httplib's client (bench, CLI)
    // reads one without a length until the connection closes.
    length = "0";
  }
  // HTTP/1.0 has no chunked coding: a streamed body ends when the connection does.
  const bool close = !job.keep_alive || (streamed && version_minor == 0);
  std::string head = FormatHead(res.status, res.headers, length.empty() ? nullptr : &length,
                                streamed && version_minor == 1, close, version_minor);
  {
    std::lock_guard lock(c.mu);
    if (c.closed) return;
    if (close) c.close_after = true;  // read by the loop only once response_done is seen
    c.out_bytes += head.size();
    c.out.push_back(std::move(head));
    if (!head_only && !streamed && !no_body) {
      if (res.file) {
        c.file = std::move(res.file);
      } else if (!res.body.empty()) {
        c.response_charge += res.body.size();
        Charge(res.body.size());
        c.out_bytes += res.body.size();
        c.out.push_back(std::move(res.body));
      }
    }
    c.last_progress = std::chrono::steady_clock::now();
    if (!streamed || head_only) c.response_done = true;
    // What it cannot send (or a broken connection) the loop takes over. draining_ is read
    // under c.mu: the loop sets it before its Dispatched() takes c.mu, so either this sees it
    // or the loop sees the connection handed back (and closes it as idle).
    if (SendQueued(c) && c.response_done && c.out_bytes == 0 && !c.file && !c.close_after &&
        c.may_hand_back && !draining_.load()) {
      c.handed_back = true;
      Release(c.response_charge);
      c.response_charge = 0;
      return;
    }
    Notify(c);
  }
  if (!streamed || head_only) return;
  Writer writer(*this, c, version_minor == 1);
  try {
    res.stream(writer);
  } catch (const std::exception& e) {
    Log(LogSeverity::kError, "serving", "handler_failed",
        std::string("http stream failed: ") + e.what());
  }
  std::lock_guard lock(c.mu);
  if (c.closed) return;
  if (version_minor == 1) {
    c.out_bytes += 5;
    c.out.emplace_back("0\r\n\r\n");
  }
  c.response_done = true;
  Notify(c);
}

Server::Server(ServerLimits limits)
    : limits_(std::move(limits)), impl_(std::make_unique<Impl>(limits_)) {}
Server::~Server() { Stop(); }

void Server::Route(std::string method, std::string pattern, Handler handler, RouteOptions options) {
  impl_->Route(std::move(method), std::move(pattern), std::move(handler), options);
}
void Server::Use(Middleware middleware) { impl_->Use(std::move(middleware)); }
void Server::BindUnix(const std::string& path) { impl_->BindUnix(path); }
void Server::SetTls(std::shared_ptr<TlsContext> tls) { impl_->SetTls(std::move(tls)); }
void Server::Admit(Admission admission) { impl_->Admit(std::move(admission)); }
void Server::SetPreflight(Handler handler) { impl_->SetPreflight(std::move(handler)); }
void Server::SetErrorBody(ErrorBody body) { impl_->SetErrorBody(std::move(body)); }
int Server::Bind(const std::string& address, int port) { return impl_->Bind(address, port); }
void Server::Start() { impl_->Start(); }
void Server::Stop() { impl_->Stop(); }
ServerStats Server::Stats() const { return impl_->Stats(); }

}  // namespace outpost::http
