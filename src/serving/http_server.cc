#include "serving/http_server.h"

#include <fmt/format.h>
#include <httplib.h>

#include "core/error.h"
#include "core/logging.h"
#include "serving/http_codec.h"

namespace outpost {
namespace {

using json = nlohmann::json;

void SendJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

// The protocol's error form: {"error": "<message>"}.
void SendError(httplib::Response& res, ErrorCode code, const std::string& message) {
  if (code == ErrorCode::kResourceExhausted || code == ErrorCode::kUnavailable)
    res.set_header("Retry-After", "1");
  SendJson(res, HttpStatusOf(code), {{"error", message}});
}

// Runs a handler and converts what it throws, once, to an HTTP error.
template <typename F>
void Guard(httplib::Response& res, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    SendError(res, e.code(), e.what());
  } catch (const std::exception& e) {
    Log(LogSeverity::kError, "serving", "handler_failed",
        std::string("http handler failed: ") + e.what());
    SendError(res, ErrorCode::kInternal, e.what());
  }
}

json TensorMetadata(const std::vector<TensorSpec>& specs) {
  json out = json::array();
  for (const auto& s : specs)
    out.push_back({{"name", s.name}, {"datatype", DataTypeName(s.dtype)}, {"shape", s.shape}});
  return out;
}

std::string Version(const httplib::Request& req) {
  return req.matches.size() > 2 ? std::string(req.matches[2]) : "";
}

void SetupCommon(httplib::Server& s) {
  s.set_tcp_nodelay(true);
  // cpp-httplib would also set SO_REUSEPORT, letting a second process bind the same port and
  // silently take half the traffic; a port in use must be an error instead.
  s.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = res.status == 404 ? "no such endpoint" : "request failed";
    if (res.status == 413) {
      // cpp-httplib limits form-encoded bodies to 8 KiB, and `curl -d` sends that type by default.
      message =
          req.get_header_value("Content-Type") == "application/x-www-form-urlencoded"
              ? "form-encoded bodies are limited to 8 KiB: send Content-Type: application/json"
              : "request body exceeds the configured limit";
    }
    res.set_content(json{{"error", message}}.dump(), "application/json");
  });
}

// Every request gets an id: the client's X-Request-Id when it is a safe token, else a new one.
// It is sent back, set for the log events of the handling thread (and carried by the
// scheduler to the runtime's), and ends the request in a "request" event at debug level.
thread_local Clock::time_point t_request_start;

void TraceRequests(httplib::Server& s) {
  s.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    t_request_start = Clock::now();
    std::string id = AcceptRequestId(req.get_header_value("X-Request-Id"));
    res.set_header("X-Request-Id", id);
    SetCurrentRequestId(std::move(id));
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    if (LogEnabled(LogSeverity::kDebug) && !CurrentRequestId().empty()) {
      const double ms =
          std::chrono::duration<double, std::milli>(Clock::now() - t_request_start).count();
      Log(LogSeverity::kDebug, "serving", "request",
          req.method + " " + req.path + " " + std::to_string(res.status),
          {{"protocol", "http"},
           {"method", req.method},
           {"path", req.path},
           {"status", res.status},
           {"duration_ms", ms},
           {"request_bytes", req.body.size()},
           {"response_bytes", res.body.size()}});
    }
    SetCurrentRequestId({});
  });
}

void ServeMetrics(httplib::Server& s, MetricsRegistry& metrics) {
  s.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
}

}  // namespace

HttpServer::HttpServer(HttpOptions options, InferenceService& service, MetricsRegistry& metrics,
                       const ServerInfo& info)
    : options_(std::move(options)),
      service_(service),
      metrics_(metrics),
      info_(info),
      server_(std::make_unique<httplib::Server>()) {
  int threads = options_.threads;
  server_->new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<size_t>(threads));
  };
  server_->set_payload_max_length(options_.max_body_bytes);
  server_->set_read_timeout(options_.read_timeout);
  server_->set_write_timeout(options_.read_timeout);
  // Each open connection holds a worker thread: idle keep-alive connections must not linger.
  server_->set_keep_alive_timeout(5);
  // httplib closes a keep-alive connection after 5 requests by default, which makes clients
  // reconnect constantly and lose requests sent into the closing socket.
  server_->set_keep_alive_max_count(1u << 30);
  SetupCommon(*server_);
  TraceRequests(*server_);
  Routes();
}

HttpServer::~HttpServer() { Stop(); }

// OpenAI's errors have their own shape; everything thrown below turns into it here, once.
template <typename F>
void GuardOpenAi(httplib::Response& res, F&& f) {
  auto send = [&](const Error& e) {
    int status = ErrorStatus(e);
    if (status == 429 || status == 503) res.set_header("Retry-After", "1");
    SendJson(res, status, ErrorBody(e));
  };
  try {
    f();
  } catch (const Error& e) {
    send(e);
  } catch (const std::exception& e) {
    Log(LogSeverity::kError, "serving", "handler_failed",
        std::string("chat handler failed: ") + e.what());
    send(Error(ErrorCode::kInternal, e.what()));
  }
}

void HttpServer::OpenAiRoutes() {
  auto& s = *server_;
  ChatService& chat = *options_.chat;
  s.Get("/v1/models", [&chat](const httplib::Request&, httplib::Response& res) {
    GuardOpenAi(res, [&] { SendJson(res, 200, chat.ListModels()); });
  });
  s.Post("/v1/chat/completions", [&chat](const httplib::Request& req, httplib::Response& res) {
    GuardOpenAi(res, [&] {
      auto prepared = std::make_shared<PreparedChat>(chat.Prepare(
          ParseChatCompletionRequest(req.body), req.get_header_value("X-Outpost-Privacy")));
      if (!prepared->request.stream && prepared->decision.route != Route::kLocal) {
        json body = chat.Run(*prepared);
        for (const auto& [k, v] : prepared->headers) res.set_header(k, v);
        SendJson(res, 200, body);
        return;
      }
      for (const auto& [k, v] : prepared->headers) res.set_header(k, v);
      if (!prepared->request.stream) {
        // A local answer is sent chunked, led by whitespace JSON allows: writing a space now
        // and then is how a client that has gone away is noticed, and its generation stopped.
        res.set_chunked_content_provider("application/json", [&chat, prepared](
                                                                 size_t, httplib::DataSink& sink) {
          bool gone = false;
          auto last = std::chrono::steady_clock::now();
          auto cancelled = [&] {
            auto now = std::chrono::steady_clock::now();
            if (!gone && now - last > std::chrono::milliseconds(100)) {
              last = now;
              gone = !(sink.is_writable() && sink.write(" ", 1));
            }
            return gone;
          };
          std::string body;
          try {
            body =
                chat.Run(*prepared, cancelled).dump(-1, ' ', false, json::error_handler_t::replace);
          } catch (const Error& e) {
            body = ErrorBody(e).dump();  // the 200 is gone already; say it in the body
          }
          if (!gone) sink.write(body.data(), body.size());
          sink.done();
          return true;
        });
        return;
      }
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream", [&chat, prepared](size_t, httplib::DataSink& sink) {
            chat.RunStream(*prepared, [&sink](const std::string& event) {
              return sink.is_writable() && sink.write(event.data(), event.size());
            });
            sink.done();
            return true;
          });
    });
  });
}

void HttpServer::Routes() {
  auto& s = *server_;
  ModelManager& models = service_.models();
  s.Get("/v2/health/live", [](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, {{"live", true}});
  });
  s.Get("/v2/health/ready", [this, &models](const httplib::Request&, httplib::Response& res) {
    if (!options_.health) {
      bool ready = models.IsReady();
      SendJson(res, ready ? 200 : 503, {{"ready", ready}});
      return;
    }
    Guard(res, [&] {
      // KServe's form ({"ready": bool}); when not ready, the failed components say why
      // (GET /v2/health has everything).
      json report = options_.health();
      bool ready = report["ready"].get<bool>() && models.IsReady();
      json body = {{"ready", ready}};
      if (!ready) {
        json why = json::array();
        for (const auto& [name, c] : report["components"].items())
          if (c["state"] == "failed") why.push_back(name + ": " + c["detail"].get<std::string>());
        body["failed"] = why;
      }
      SendJson(res, ready ? 200 : 503, body);
    });
  });
  s.Get("/v2/health", [this](const httplib::Request&, httplib::Response& res) {
    Guard(res, [&] {
      if (!options_.health) Fail(ErrorCode::kNotFound, "health is not reported");
      SendJson(res, 200, options_.health());
    });
  });
  s.Get("/v2", [this](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200,
             {{"name", info_.name},
              {"version", info_.version},
              {"extensions", info_.extensions},
              {"unsigned_models_allowed", info_.unsigned_models_allowed},
              {"device", info_.capabilities}});
  });
  const std::string model_re =
      R"(/v2/models/([A-Za-z0-9][A-Za-z0-9_.\-]*)(?:/versions/([A-Za-z0-9][A-Za-z0-9_.\-]*))?)";
  s.Get(model_re, [&models](const httplib::Request& req, httplib::Response& res) {
    Guard(res, [&] {
      auto served = models.Get(req.matches[1], Version(req));
      const auto& c = served->config;
      json body = {{"name", c.name},
                   {"versions", models.ReadyVersions(c.name)},
                   {"platform", c.platform},
                   {"inputs", TensorMetadata(c.inputs)},
                   {"outputs", TensorMetadata(c.outputs)}};
      if (c.max_batch_size > 0) body["max_batch_size"] = c.max_batch_size;
      if (!c.description.empty()) body["description"] = c.description;
      SendJson(res, 200, body);
    });
  });
  s.Get(model_re + "/ready", [&models](const httplib::Request& req, httplib::Response& res) {
    Guard(res, [&] {
      auto served = models.Get(req.matches[1], Version(req));
      SendJson(
          res, 200,
          {{"name", served->config.name}, {"version", served->config.version}, {"ready", true}});
    });
  });
  s.Post(model_re + "/infer", [this](const httplib::Request& req, httplib::Response& res) {
    Guard(res, [&] {
      std::optional<size_t> header_length;
      if (req.has_header("Inference-Header-Content-Length")) {
        header_length = ParseHeaderLength(req.get_header_value("Inference-Header-Content-Length"));
        if (!header_length)
          Fail(ErrorCode::kInvalidArgument, "Inference-Header-Content-Length is not a number");
      }
      InferRequest request = DecodeHttpInferRequest(req.body, header_length);
      request.model_name = req.matches[1];
      request.model_version = Version(req);
      InferResponse response = service_.Infer(request);
      EncodedHttpResponse encoded = EncodeHttpInferResponse(response, request);
      res.status = 200;
      if (encoded.header_length) {
        res.set_header("Inference-Header-Content-Length", std::to_string(*encoded.header_length));
        res.set_content(std::move(encoded.body), "application/octet-stream");
      } else {
        res.set_content(std::move(encoded.body), "application/json");
      }
    });
  });
  auto index = [&models](const httplib::Request&, httplib::Response& res) {
    json out = json::array();
    for (const auto& e : models.Index()) {
      json entry = {{"name", e.name}, {"state", VersionStateName(e.state)}};
      if (!e.version.empty()) entry["version"] = e.version;
      if (!e.reason.empty()) entry["reason"] = e.reason;
      out.push_back(entry);
    }
    SendJson(res, 200, out);
  };
  if (options_.install_package) {
    s.Post("/v2/repository/packages", [this](const httplib::Request& req, httplib::Response& res) {
      Guard(res, [&] {
        IndexEntry e = options_.install_package(req.body);
        SendJson(res, 201,
                 {{"name", e.name},
                  {"version", e.version},
                  {"state", VersionStateName(e.state)},
                  {"reason", e.reason}});
      });
    });
  }
  s.Get("/v2/updates", [this](const httplib::Request&, httplib::Response& res) {
    Guard(res, [&] {
      SendJson(res, 200,
               options_.update_status ? options_.update_status() : json{{"enabled", false}});
    });
  });
  s.Post("/v2/updates/check", [this](const httplib::Request& req, httplib::Response& res) {
    Guard(res, [&] {
      if (!options_.update_check)
        Fail(ErrorCode::kFailedPrecondition, "updates are off (no update_url configured)");
      bool force = req.get_param_value("force") == "true" || req.get_param_value("force") == "1";
      SendJson(res, 200, options_.update_check(force));
    });
  });
  if (options_.chat) OpenAiRoutes();
  // Log level at run time: GET says it, PUT {"level": "debug"} changes it (until restart).
  s.Get("/v2/logging", [](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, {{"level", LogLevel()}});
  });
  s.Put("/v2/logging", [](const httplib::Request& req, httplib::Response& res) {
    Guard(res, [&] {
      json body = json::parse(req.body, nullptr, false);
      if (!body.is_object() || !body.contains("level") || !body["level"].is_string())
        Fail(ErrorCode::kInvalidArgument,
             "expected {\"level\": \"trace|debug|info|warn|error|off\"}");
      std::string before = LogLevel();
      SetLogLevel(body["level"].get<std::string>());
      Log(LogSeverity::kWarn, "agent", "log_level_changed",
          "log level changed from " + before + " to " + LogLevel(),
          {{"from", before}, {"to", LogLevel()}});
      SendJson(res, 200, {{"level", LogLevel()}});
    });
  });
  if (options_.monitoring_status)
    s.Get("/v2/monitoring", [this](const httplib::Request&, httplib::Response& res) {
      Guard(res, [&] { SendJson(res, 200, options_.monitoring_status()); });
    });
  s.Get("/v2/repository/index", index);
  s.Post("/v2/repository/index", index);
  if (options_.serve_metrics) ServeMetrics(s, metrics_);
}

// Binds (port 0: any free port) and serves on a thread of its own; returns the bound port.
int Listen(httplib::Server& server, const std::string& address, int port, const char* what,
           std::thread& thread) {
  int bound = port == 0 ? server.bind_to_any_port(address)
                        : (server.bind_to_port(address, port) ? port : -1);
  if (bound < 0) {
    Fail(ErrorCode::kUnavailable,
         std::string("cannot listen for ") + what + " on " + address + ":" + std::to_string(port));
  }
  thread = std::thread([&server] { server.listen_after_bind(); });
  return bound;
}

int HttpServer::Start() {
  return Listen(*server_, options_.address, options_.port, "HTTP", thread_);
}

void HttpServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

MetricsServer::MetricsServer(std::string address, int port, MetricsRegistry& metrics)
    : address_(std::move(address)), port_(port), server_(std::make_unique<httplib::Server>()) {
  SetupCommon(*server_);
  ServeMetrics(*server_, metrics);
}

MetricsServer::~MetricsServer() { Stop(); }

int MetricsServer::Start() { return Listen(*server_, address_, port_, "metrics", thread_); }

void MetricsServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace outpost
