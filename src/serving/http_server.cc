#include "serving/http_server.h"

#include <fmt/format.h>

#include "auth/authorizer.h"
#include "core/error.h"
#include "core/json_fields.h"
#include "core/json_input.h"
#include "core/logging.h"
#include "core/memory_budget.h"
#include "core/names.h"
#include "serving/http_codec.h"

namespace outpost {
namespace {

using json = nlohmann::json;
using http::Request;
using http::Response;

constexpr size_t kControlBodyBytes = 64u << 10;

json IndexEntryJson(const IndexEntry& e) {
  json entry = {{"name", e.name}, {"state", VersionStateName(e.state)}};
  if (!e.version.empty()) entry["version"] = e.version;
  if (!e.reason.empty()) entry["reason"] = e.reason;
  if (e.memory_bytes) entry["memory_bytes"] = e.memory_bytes;
  if (e.file_bytes) entry["file_bytes"] = e.file_bytes;
  if (!e.placement.provider.empty()) entry["execution_provider"] = e.placement.provider;
  if (!e.placement.skipped.empty()) {
    json skipped = json::array();
    for (const auto& [provider, why] : e.placement.skipped)
      skipped.push_back({{"provider", provider}, {"reason", why}});
    entry["providers_skipped"] = skipped;
  }
  return entry;
}

// A load/unload request's body: empty, or Triton's {"parameters": {...}}. Triton's "config" and
// "file:" overrides would serve bytes no signature covers, so they are refused; its
// "unload_dependents" means nothing without ensembles.
void CheckModelControlBody(const std::string& body) {
  if (body.empty()) return;
  json j = ParseJson(body, JsonLimits::Control(), "model control");
  if (!j.is_object())
    Fail(ErrorCode::kInvalidArgument, "expected {\"parameters\": {...}} or no body");
  for (const auto& [key, value] : j.items()) {
    if (key != "parameters" || !value.is_object())
      Fail(ErrorCode::kInvalidArgument,
           "unexpected field '" + key + "': expected {\"parameters\": {...}}");
    for (const auto& [name, _] : value.items())
      if (name != "unload_dependents")
        Fail(ErrorCode::kInvalidArgument,
             "parameter '" + name +
                 "' is not supported: models load only from the signed files in the repository");
  }
}

// What each group of routes accepts (RouteOptions::access).
using auth::Scope;
constexpr auth::Scopes kStatus = Scope::kObserve | Scope::kInference;  // health, server metadata
constexpr auth::Scopes kObserve = static_cast<auth::Scopes>(Scope::kObserve);
constexpr auth::Scopes kInference = static_cast<auth::Scopes>(Scope::kInference);
constexpr auth::Scopes kChat = static_cast<auth::Scopes>(Scope::kChat);
constexpr auth::Scopes kAdmin = static_cast<auth::Scopes>(Scope::kAdmin);

void SendJson(Response& res, int status, const json& body) {
  res.status = status;
  res.Set(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

// The protocol's error form: {"error": "<message>"}.
void SendError(Response& res, ErrorCode code, const std::string& message) {
  if (code == ErrorCode::kResourceExhausted || code == ErrorCode::kUnavailable)
    res.SetHeader("Retry-After", "1");
  SendJson(res, HttpStatusOf(code), {{"error", message}});
}

// Runs a handler and converts what it throws, once, to an HTTP error.
template <typename F>
void Guard(Response& res, F&& f) {
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

// OpenAI's errors have their own shape; everything thrown below turns into it here, once.
void SendOpenAiError(Response& res, const Error& e) {
  int status = ErrorStatus(e);
  if (status == 429 || status == 503) res.SetHeader("Retry-After", "1");
  SendJson(res, status, ErrorBody(e));
}

template <typename F>
void GuardOpenAi(Response& res, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    SendOpenAiError(res, e);
  } catch (const std::exception& e) {
    Log(LogSeverity::kError, "serving", "handler_failed",
        std::string("chat handler failed: ") + e.what());
    SendOpenAiError(res, Error(ErrorCode::kInternal, e.what()));
  }
}

ErrorCode CodeOfStatus(int status) {
  switch (status) {
    case 401:
      return ErrorCode::kUnauthenticated;
    case 403:
      return ErrorCode::kPermissionDenied;
    case 404:
      return ErrorCode::kNotFound;
    case 408:
      return ErrorCode::kDeadlineExceeded;
    case 413:
      return ErrorCode::kPayloadTooLarge;
    case 503:
      return ErrorCode::kUnavailable;
    default:
      return status >= 500 ? ErrorCode::kInternal : ErrorCode::kInvalidArgument;
  }
}

// What the server answers by itself (404, 413, 408, 503, ...): OpenAI's shape under /v1.
std::string ServerErrorBody(const Request& req, int status, const std::string& message) {
  if (req.path.rfind("/v1/", 0) == 0)
    return ErrorBody(ApiError(CodeOfStatus(status), message)).dump();
  return http::JsonErrorBody(message);
}

json TensorMetadata(const std::vector<TensorSpec>& specs) {
  json out = json::array();
  for (const auto& s : specs)
    out.push_back({{"name", s.name}, {"datatype", DataTypeName(s.dtype)}, {"shape", s.shape}});
  return out;
}

// Whose shared-memory regions a request sees: its API key's, else (on the Unix socket) its
// user's, else those of every caller without a credential.
SharedMemoryCaller RegionCaller(const Request& req) {
  SharedMemoryCaller c{req.caller, std::nullopt};
  if (req.local_socket) {
    c.peer_uid = req.peer_uid;
    if (req.caller == "anonymous") c.id = "uid:" + std::to_string(req.peer_uid);
  }
  return c;
}

json RegionStatusJson(const std::vector<SharedMemoryRegionStatus>& regions) {
  json out = json::array();
  for (const auto& r : regions)
    out.push_back(
        {{"name", r.name}, {"key", r.key}, {"offset", r.offset}, {"byte_size", r.byte_size}});
  return out;
}

// The {model} of a route, which the old regex routes held to the model-name alphabet.
const std::string& ModelParam(const Request& req) {
  const std::string& name = req.PathParam("model");
  if (!IsValidModelName(name))
    Fail(ErrorCode::kNotFound, "'" + name + "' is not a valid model name");
  return name;
}

// Every request gets an id: the client's X-Request-Id when it is a safe token, else a new one.
// It is sent back, set for the log events of the handling thread (and carried by the
// scheduler to the runtime's), and ends the request in a "request" event at debug level.
void TraceRequests(http::Server& s) {
  s.Use([](const Request& req, Response& res, const http::Handler& handler) {
    const auto start = Clock::now();
    RequestIdScope scope(AcceptRequestId(req.Header("X-Request-Id")));
    const std::string id = CurrentRequestId();
    res.SetHeader("X-Request-Id", id);
    handler(req, res);
    if (res.stream) {
      // A streamed body is produced after this returns: it keeps the request's id.
      res.stream = [id, produce = std::move(res.stream)](http::StreamWriter& out) {
        RequestIdScope stream_scope(id);
        produce(out);
      };
    }
    if (LogEnabled(LogSeverity::kDebug)) {
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
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
  });
}

// Every route says what it accepts; the credential is checked from the head, before a body is
// read, so a caller without one cannot make the agent receive (or hold) a large upload.
// On the Unix socket, what a caller may do without a key follows from its uid and gid.
// Over TLS, a verified client certificate grants its subject's scopes.
void RequireCredentials(http::Server& s, const auth::ApiKeyStore* keys, auth::Scopes open,
                        auth::PeerPolicy peers = {}, auth::SubjectPolicy subjects = {}) {
  s.Admit([keys, open, peers = std::move(peers), subjects = std::move(subjects)](
              Request& req, const http::RouteOptions& route) -> http::Refusal {
    if (route.access == 0) return {};  // a CORS preflight: browsers send it without credentials
    auth::Scopes granted = req.local_socket ? peers.For(req.peer_uid, req.peer_gid) : open;
    granted |= subjects.For(req.tls_subject);
    const auth::Decision d = auth::Authorize(
        keys, auth::PresentedKey(req.Header("Authorization"), req.Header("X-Api-Key")), granted,
        route.access);
    if (d.allowed) {
      req.caller = d.caller;
      req.granted = d.scopes;
      return {};
    }
    http::Refusal refusal{HttpStatusOf(d.code), d.message, {}};
    if (d.code == ErrorCode::kUnauthenticated)
      refusal.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"outpost\"");
    return refusal;
  });
}

void ServeMetrics(http::Server& s, MetricsRegistry& metrics) {
  s.Route("GET", "/metrics",
          [&metrics](const Request&, Response& res) {
            res.Set(metrics.Render(), "text/plain; version=0.0.4; charset=utf-8");
          },
          {.priority = true, .access = kObserve});
}

int Listen(http::Server& server, const std::string& address, int port, const char* what) {
  int bound = 0;
  try {
    bound = server.Bind(address, port);
  } catch (const Error& e) {
    Fail(ErrorCode::kUnavailable, std::string("cannot listen for ") + what + " on " + address +
                                      ":" + std::to_string(port) + " (" + e.what() + ")");
  }
  server.Start();
  return bound;
}

http::ServerLimits MetricsLimits() {
  http::ServerLimits l;
  l.max_connections = 64;
  l.worker_threads = 1;
  l.priority_threads = 2;
  l.max_inflight_bytes = 16u << 20;
  return l;
}

}  // namespace

HttpServer::HttpServer(HttpOptions options, InferenceService& service, MetricsRegistry& metrics,
                       const ServerInfo& info)
    : options_(std::move(options)),
      service_(service),
      metrics_(metrics),
      info_(info),
      guard_(options_.browser),
      server_(options_.limits) {
  server_.SetErrorBody(ServerErrorBody);
  TraceRequests(server_);
  guard_.Install(server_);  // a browser's request is refused as such, credentials or not
  RequireCredentials(server_, options_.keys, options_.open_scopes, options_.unix_peers,
                     options_.tls_client_subjects);
  if (options_.tls) server_.SetTls(options_.tls);
  Routes();
}

HttpServer::~HttpServer() { Stop(); }

// The cloud scope of the caller, and an API key's own budget of cloud tokens.
CloudPermit HttpServer::CloudPermitOf(const Request& req) const {
  CloudPermit permit;
  permit.allowed = auth::Has(req.granted, Scope::kCloud);
  if (options_.keys && req.caller.rfind("opk_", 0) == 0) {
    permit.has_room = [keys = options_.keys, id = req.caller] { return keys->HasCloudRoom(id); };
    permit.spend = [keys = options_.keys, id = req.caller](uint64_t tokens) {
      keys->SpendCloud(id, tokens);
    };
  }
  return permit;
}

void HttpServer::OpenAiRoutes() {
  auto& s = server_;
  ChatService& chat = *options_.chat;
  s.Route("GET", "/v1/models",
          [&chat](const Request&, Response& res) {
            GuardOpenAi(res, [&] { SendJson(res, 200, chat.ListModels()); });
          },
          {.access = kChat});
  s.Route("POST", "/v1/chat/completions",
          [this, &chat](const Request& req, Response& res) {
            GuardOpenAi(res, [&] {
              auto prepared = std::make_shared<PreparedChat>(
                  chat.Prepare(ParseChatCompletionRequest(req.body),
                               req.Header("X-Outpost-Privacy"), CloudPermitOf(req)));
              if (!prepared->request.stream && prepared->decision.route != Route::kLocal) {
                json body = chat.Run(*prepared);  // a cloud failure changes the route headers
                for (const auto& [k, v] : prepared->headers) res.SetHeader(k, v);
                SendJson(res, 200, body);
                return;
              }
              for (const auto& [k, v] : prepared->headers) res.SetHeader(k, v);
              if (!prepared->request.stream) {
                // A local answer is sent chunked, led by whitespace JSON allows: writing a space
                // now and then is how a client that has gone away is noticed, and its generation
                // stopped.
                res.Stream("application/json", [&chat, prepared](http::StreamWriter& out) {
                  bool gone = false;
                  auto last = std::chrono::steady_clock::now();
                  auto cancelled = [&] {
                    auto now = std::chrono::steady_clock::now();
                    if (!gone && now - last > std::chrono::milliseconds(100)) {
                      last = now;
                      gone = !out.Write(" ");
                    }
                    return gone;
                  };
                  std::string body;
                  try {
                    body = chat.Run(*prepared, cancelled)
                               .dump(-1, ' ', false, json::error_handler_t::replace);
                  } catch (const Error& e) {
                    body = ErrorBody(e).dump();  // the 200 is gone already; say it in the body
                  }
                  if (!gone) out.Write(body);
                });
                return;
              }
              res.SetHeader("Cache-Control", "no-cache");
              res.Stream("text/event-stream", [&chat, prepared](http::StreamWriter& out) {
                chat.RunStream(*prepared,
                               [&out](const std::string& event) { return out.Write(event); });
              });
            });
          },
          {.max_body = kMaxChatRequestBytes, .access = kChat});
}

void HttpServer::Routes() {
  auto& s = server_;
  ModelManager& models = service_.models();
  const http::RouteOptions health{.priority = true, .access = kStatus};
  s.Route(
      "GET", "/v2/health/live",
      [](const Request&, Response& res) {
        SendJson(res, 200, {{"live", true}});
      },
      health);
  s.Route(
      "GET", "/v2/health/ready",
      [this, &models](const Request&, Response& res) {
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
              if (c["state"] == "failed")
                why.push_back(name + ": " + c["detail"].get<std::string>());
            body["failed"] = why;
          }
          SendJson(res, ready ? 200 : 503, body);
        });
      },
      health);
  s.Route(
      "GET", "/v2/health",
      [this](const Request&, Response& res) {
        Guard(res, [&] {
          if (!options_.health) Fail(ErrorCode::kNotFound, "health is not reported");
          SendJson(res, 200, options_.health());
        });
      },
      health);
  s.Route("GET", "/v2",
          [this](const Request&, Response& res) {
            SendJson(res, 200,
                     {{"name", info_.name},
                      {"version", info_.version},
                      {"extensions", info_.extensions},
                      {"unsigned_models_allowed", info_.unsigned_models_allowed},
                      {"device", info_.capabilities}});
          },
          {.access = kStatus});

  auto metadata = [&models](const Request& req, Response& res) {
    Guard(res, [&] {
      auto served = models.Get(ModelParam(req), req.PathParam("version"));
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
  };
  auto ready = [&models](const Request& req, Response& res) {
    Guard(res, [&] {
      auto served = models.Get(ModelParam(req), req.PathParam("version"));
      SendJson(
          res, 200,
          {{"name", served->config.name}, {"version", served->config.version}, {"ready", true}});
    });
  };
  auto infer = [this](const Request& req, Response& res) {
    Guard(res, [&] {
      std::optional<size_t> header_length;
      if (req.HasHeader("Inference-Header-Content-Length")) {
        header_length = ParseHeaderLength(req.Header("Inference-Header-Content-Length"));
        if (!header_length)
          Fail(ErrorCode::kInvalidArgument, "Inference-Header-Content-Length is not a number");
      }
      // The body is held by the server already; what decoding and inference add is held here,
      // so that a request that would pass the budget is refused instead of growing the agent.
      BudgetHold hold(options_.limits.budget);
      // An unknown model is refused before a large body is decoded for nothing.
      service_.models().Get(ModelParam(req), req.PathParam("version"));
      InferRequest request = DecodeHttpInferRequest(req.body, header_length, &hold);
      request.model_name = ModelParam(req);
      request.model_version = req.PathParam("version");
      request.caller = RegionCaller(req);
      InferResponse response = service_.Infer(request, std::nullopt, &hold);
      for (const auto& t : response.outputs) hold.AddDone(t.data.size());
      EncodedHttpResponse encoded = EncodeHttpInferResponse(response, request);
      res.status = 200;
      if (encoded.header_length) {
        res.SetHeader("Inference-Header-Content-Length", std::to_string(*encoded.header_length));
        res.Set(std::move(encoded.body), "application/octet-stream");
      } else {
        res.Set(std::move(encoded.body), "application/json");
      }
    });
  };
  const http::RouteOptions infer_options{.max_body = options_.max_body_bytes, .access = kInference};
  for (const std::string base : {"/v2/models/{model}", "/v2/models/{model}/versions/{version}"}) {
    s.Route("GET", base, metadata, {.access = kInference});
    s.Route("GET", base + "/ready", ready, {.access = kInference});
    s.Route("POST", base + "/infer", infer, infer_options);
  }

  SharedMemoryRoutes();

  auto index = [&models](const Request&, Response& res) {
    json out = json::array();
    for (const auto& e : models.Index()) out.push_back(IndexEntryJson(e));
    SendJson(res, 200, out);
  };
  s.Route("GET", "/v2/repository/index", index, {.access = kObserve});
  s.Route("POST", "/v2/repository/index", index,
          {.max_body = kControlBodyBytes, .access = kObserve});
  if (options_.model_control) {
    for (const bool load : {true, false})
      s.Route("POST",
              load ? "/v2/repository/models/{model}/load" : "/v2/repository/models/{model}/unload",
              [this, load](const Request& req, Response& res) {
                Guard(res, [&] {
                  CheckModelControlBody(req.body);
                  json out = json::array();
                  for (const auto& e : options_.model_control(ModelParam(req), load, req.caller))
                    out.push_back(IndexEntryJson(e));
                  SendJson(res, 200, out);
                });
              },
              {.max_body = kControlBodyBytes, .access = kAdmin});
  }
  if (options_.install_package) {
    s.Route("POST", "/v2/repository/packages",
            [this](const Request& req, Response& res) {
              Guard(res, [&] {
                IndexEntry e = options_.install_package(req.body, req.caller);
                SendJson(res, 201,
                         {{"name", e.name},
                          {"version", e.version},
                          {"state", VersionStateName(e.state)},
                          {"reason", e.reason}});
              });
            },
            {.max_body = options_.max_body_bytes, .access = kAdmin});
  }
  s.Route("GET", "/v2/updates",
          [this](const Request&, Response& res) {
            Guard(res, [&] {
              SendJson(
                  res, 200,
                  options_.update_status ? options_.update_status() : json{{"enabled", false}});
            });
          },
          {.access = kObserve});
  s.Route("POST", "/v2/updates/check",
          [this](const Request& req, Response& res) {
            Guard(res, [&] {
              if (!options_.update_check)
                Fail(ErrorCode::kFailedPrecondition, "updates are off (no update_url configured)");
              const std::string force = req.Query("force");
              SendJson(res, 200,
                       options_.update_check(force == "true" || force == "1", req.caller));
            });
          },
          {.max_body = kControlBodyBytes, .access = kAdmin});
  if (options_.chat) OpenAiRoutes();
  // Log level at run time: GET says it, PUT {"level": "debug"} changes it (until restart).
  s.Route("GET", "/v2/logging",
          [](const Request&, Response& res) {
            SendJson(res, 200, {{"level", LogLevel()}});
          },
          {.access = kObserve});
  s.Route("PUT", "/v2/logging",
          [](const Request& req, Response& res) {
            Guard(res, [&] {
              json body = ParseJson(req.body, JsonLimits::Control(), "logging");
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
          },
          {.max_body = kControlBodyBytes, .access = kAdmin});
  if (options_.monitoring_status)
    s.Route("GET", "/v2/monitoring",
            [this](const Request&, Response& res) {
              Guard(res, [&] { SendJson(res, 200, options_.monitoring_status()); });
            },
            {.access = kAdmin});
  if (options_.keys) KeyRoutes();
  if (options_.serve_metrics) ServeMetrics(s, metrics_);
}

// Triton's system shared-memory extension: a region is registered with the shm_open key of
// an object the caller created, and used by name in inference requests.
void HttpServer::SharedMemoryRoutes() {
  http::Server& s = server_;
  SharedMemoryRegistry& regions = service_.shared_memory();
  auto status = [&regions](const Request& req, Response& res) {
    Guard(res, [&] {
      SendJson(res, 200,
               RegionStatusJson(regions.Status(req.PathParam("region"), RegionCaller(req))));
    });
  };
  auto unregister = [&regions](const Request& req, Response& res) {
    Guard(res, [&] {
      if (!req.body.empty()) ParseJson(req.body, JsonLimits::Control(), "unregister");
      regions.Unregister(req.PathParam("region"), RegionCaller(req));
      SendJson(res, 200, json::object());
    });
  };
  const http::RouteOptions control{.max_body = kControlBodyBytes, .access = kInference};
  for (const std::string base :
       {"/v2/systemsharedmemory", "/v2/systemsharedmemory/region/{region}"}) {
    s.Route("GET", base + "/status", status, {.access = kInference});
    s.Route("POST", base + "/unregister", unregister, control);
  }
  s.Route(
      "POST", "/v2/systemsharedmemory/region/{region}/register",
      [&regions](const Request& req, Response& res) {
        Guard(res, [&] {
          const json body = ParseJson(req.body, JsonLimits::Control(), "shared-memory region");
          const JsonFields f(body, "request", "");
          f.OnlyKeys({"key", "offset", "byte_size"});
          regions.Register(req.PathParam("region"), f.Require<std::string>("key"),
                           f.Get("offset", uint64_t{0}), f.Require<uint64_t>("byte_size"),
                           RegionCaller(req));
          SendJson(res, 200, json::object());
        });
      },
      control);
}

// API keys: GET lists them (never their secrets), POST {"scopes": [...], "name": "...",
// "budget_tokens": N} makes one and answers its key, once; DELETE revokes one at once.
void HttpServer::KeyRoutes() {
  auto& s = server_;
  auth::ApiKeyStore& keys = *options_.keys;
  auto info_json = [](const auth::ApiKeyInfo& k) {
    json out = {{"id", k.id},
                {"name", k.name},
                {"scopes", auth::ScopeNames(k.scopes)},
                {"created", k.created},
                {"revoked", k.revoked}};
    if (k.budget_tokens) {
      out["budget_tokens"] = k.budget_tokens;
      out["spent_tokens_today"] = k.spent_tokens;
    }
    return out;
  };
  s.Route("GET", "/v2/auth/keys",
          [&keys, info_json](const Request&, Response& res) {
            json out = json::array();
            for (const auto& k : keys.List()) out.push_back(info_json(k));
            SendJson(res, 200, out);
          },
          {.access = kAdmin});
  s.Route("POST", "/v2/auth/keys",
          [&keys, info_json](const Request& req, Response& res) {
            Guard(res, [&] {
              const json body = ParseJson(req.body, JsonLimits::Control(), "API key");
              const JsonFields f(body, "request", "API key");
              f.OnlyKeys({"name", "scopes", "budget_tokens"});
              const auto scopes = f.Get("scopes", std::vector<std::string>{});
              if (scopes.empty())
                Fail(ErrorCode::kInvalidArgument,
                     "an API key needs \"scopes\": some of inference, chat, cloud, admin, observe");
              auto created = keys.Create(f.Get("name", ""), auth::ParseScopes(scopes),
                                         f.Get("budget_tokens", uint64_t{0}));
              json out = info_json(created.info);
              out["id"] = "opk_" + created.info.id;
              out["key"] = created.key;
              res.SetHeader("Cache-Control", "no-store");
              SendJson(res, 201, out);
            });
          },
          {.max_body = kControlBodyBytes, .access = kAdmin});
  s.Route("DELETE", "/v2/auth/keys/{id}",
          [&keys](const Request& req, Response& res) {
            Guard(res, [&] {
              keys.Revoke(req.PathParam("id"));
              SendJson(res, 200, {{"id", req.PathParam("id")}, {"revoked", true}});
            });
          },
          {.access = kAdmin});
}

void HttpServer::AppendMetrics(std::string& out) const {
  const http::ServerStats s = server_.Stats();
  auto family = [&out](const char* name, const char* type, const char* help, double value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    AppendSample(out, name, "", value);
  };
  family("outpost_http_connections", "gauge", "Open HTTP connections.",
         static_cast<double>(s.connections));
  family("outpost_inflight_bytes", "gauge",
         "Bytes requests hold now (bodies, tensors, responses), HTTP and gRPC together.",
         static_cast<double>(s.inflight_bytes));
  if (options_.limits.budget)
    family("outpost_inflight_limit_bytes", "gauge", "The limit of outpost_inflight_bytes.",
           static_cast<double>(options_.limits.budget->limit()));
  family("outpost_http_connections_evicted_total", "counter",
         "Idle or slow connections closed to make room for new ones.",
         static_cast<double>(s.evicted_total));
  family("outpost_http_connections_refused_total", "counter",
         "Connections turned away with every slot taken.", static_cast<double>(s.refused_total));
  family("outpost_http_timeouts_total", "counter",
         "Requests that did not arrive in time, and responses nobody read.",
         static_cast<double>(s.timed_out_total));
  family("outpost_http_overloaded_total", "counter",
         "Requests refused with 503 because the byte budget or the queue was full.",
         static_cast<double>(s.overloaded_total));
}

int HttpServer::Start() {
  if (!options_.unix_socket.empty()) {
    try {
      server_.BindUnix(options_.unix_socket);
    } catch (const Error& e) {
      Fail(ErrorCode::kUnavailable, std::string("cannot listen on the Unix socket ") + e.what());
    }
  }
  return Listen(server_, options_.address, options_.port, "HTTP");
}

void HttpServer::Stop() { server_.Stop(); }

MetricsServer::MetricsServer(std::string address, int port, MetricsRegistry& metrics,
                             http::BrowserPolicy browser, const auth::ApiKeyStore* keys,
                             auth::Scopes open_scopes, std::shared_ptr<http::TlsContext> tls,
                             auth::SubjectPolicy tls_client_subjects)
    : address_(std::move(address)),
      port_(port),
      guard_(std::move(browser)),
      server_(MetricsLimits()) {
  guard_.Install(server_);
  RequireCredentials(server_, keys, open_scopes, {}, std::move(tls_client_subjects));
  if (tls) server_.SetTls(std::move(tls));
  ServeMetrics(server_, metrics);
}

MetricsServer::~MetricsServer() { Stop(); }

int MetricsServer::Start() { return Listen(server_, address_, port_, "metrics"); }

void MetricsServer::Stop() { server_.Stop(); }

}  // namespace outpost
