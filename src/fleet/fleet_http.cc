#include "fleet/fleet_http.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>

#include "core/json_input.h"
#include "core/logging.h"
#include "fleet/dashboard.h"
#include "fleet/device_input.h"
#include "http/static_file.h"

namespace outpost::fleet {
namespace {

using http::Request;
using http::Response;

// Body limits per kind of endpoint: what a legitimate client sends, with room to spare.
constexpr size_t kControlBody = 64u << 10;
constexpr size_t kReportBody = kReportJsonLimits.max_bytes;
constexpr size_t kTelemetryBody = kTelemetryJsonLimits.max_bytes;
constexpr size_t kUploadBody = 8u << 20;    // the CLI uploads 4 MiB chunks
constexpr size_t kTargetsBody = 16u << 20;  // signed targets metadata
constexpr JsonLimits kDeploymentJson = kReportJsonLimits;

void SendJson(Response& res, int status, const json& body) {
  res.status = status;
  res.Set(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

template <typename F>
void Guard(Response& res, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kUnavailable) res.SetHeader("Retry-After", "1");
    if (e.code() == ErrorCode::kUnauthenticated)
      res.SetHeader("WWW-Authenticate", "Bearer realm=\"outpost-fleet\"");
    SendJson(res, HttpStatusOf(e.code()), {{"error", e.what()}});
  } catch (const json::exception& e) {
    SendJson(res, 400, {{"error", std::string("bad JSON: ") + e.what()}});
  } catch (const std::exception& e) {
    Log(LogSeverity::kError, "fleet", "handler_failed", std::string("handler failed: ") + e.what());
    SendJson(res, 500, {{"error", e.what()}});
  }
}

json Body(const Request& req, const JsonLimits& limits = JsonLimits::Control()) {
  return ParseJson(req.body, limits, "body");
}

int64_t IntParam(const Request& req, const char* name, int64_t fallback) {
  if (!req.HasQuery(name)) return fallback;
  const std::string v = req.Query(name);
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size())
    Fail(ErrorCode::kInvalidArgument, std::string(name) + " must be an integer");
  return n;
}

bool Matches(const std::string& s, bool (*first)(char), bool (*rest)(char)) {
  if (s.empty() || !first(s[0])) return false;
  return std::all_of(s.begin() + 1, s.end(), rest);
}
bool Alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
bool IdChar(char c) { return Alnum(c) || c == '_'; }
bool NameChar(char c) { return Alnum(c) || c == '_' || c == '.' || c == '-'; }

// A path segment held to its alphabet, as the routes' patterns were: anything else is 404.
const std::string& Segment(const Request& req, const char* name, bool (*first)(char),
                           bool (*rest)(char)) {
  const std::string& v = req.PathParam(name);
  if (!Matches(v, first, rest)) Fail(ErrorCode::kNotFound, "no such endpoint");
  return v;
}
const std::string& IdParam(const Request& req) { return Segment(req, "id", IdChar, IdChar); }
const std::string& NameParam(const Request& req) { return Segment(req, "name", Alnum, NameChar); }
int64_t NumberParam(const Request& req) {
  const std::string& v = req.PathParam("id");
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || n < 0)
    Fail(ErrorCode::kNotFound, "no such rollout");
  return n;
}

http::ServerLimits Limits(const FleetServerOptions& o) {
  http::ServerLimits l;
  l.worker_threads = o.threads;
  l.max_connections = static_cast<size_t>(o.max_connections);
  l.max_inflight_bytes = 256u << 20;
  l.write_timeout = std::chrono::seconds(60);  // target downloads over slow links
  return l;
}

}  // namespace

FleetServer::FleetServer(Fleet& fleet, FleetServerOptions options)
    : fleet_(fleet), options_(std::move(options)), http_(Limits(options_)) {
  Routes();
}

FleetServer::~FleetServer() { Stop(); }

void FleetServer::Bind() {
  try {
    port_ = http_.Bind(options_.host, options_.port);
  } catch (const Error& e) {
    Fail(ErrorCode::kUnavailable, fmt::format("cannot listen on {}:{} (in use?): {}", options_.host,
                                              options_.port, e.what()));
  }
  controller_ = std::thread([this] { ControllerLoop(); });
}

void FleetServer::Serve() {
  http_.Start();
  std::unique_lock lock(stop_mu_);
  stop_cv_.wait(lock, [&] { return stop_.load(); });
}

void FleetServer::Stop() {
  {
    std::lock_guard lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  http_.Stop();
  if (controller_.joinable()) controller_.join();
}

void FleetServer::ControllerLoop() {
  while (!stop_) {
    try {
      fleet_.TickRollouts();
      fleet_.RefreshTimestamp();
      fleet_.PublishAuditHead(options_.audit_sign_interval);
      fleet_.Maintain();
    } catch (const std::exception& e) {
      Log(LogSeverity::kWarn, "fleet", "controller_failed",
          std::string("rollout controller: ") + e.what());
    }
    for (auto waited = std::chrono::milliseconds(0); waited < options_.rollout_tick && !stop_;
         waited += std::chrono::milliseconds(50))
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void FleetServer::Routes() {
  auto& s = http_;
  Fleet& f = fleet_;
  // An operator handler: the token is checked for the scope first.
  auto op = [&f](Scope scope, auto handler) {
    return [&f, scope, handler](const Request& req, Response& res) {
      Guard(res, [&] {
        Caller caller = f.AuthenticateOperator(req.Header("Authorization"), req.remote_addr, scope);
        handler(caller, req, res);
      });
    };
  };
  auto device = [&f](auto handler) {
    return [&f, handler](const Request& req, Response& res) {
      Guard(res, [&] {
        DeviceSignature sig{req.Header("X-Outpost-Device"), req.Header("X-Outpost-Time"),
                            req.Header("X-Outpost-Signature")};
        // The target as the client sent it: what a device signed.
        Caller caller =
            f.AuthenticateDevice(sig, req.method, req.target, req.body, req.remote_addr);
        handler(caller, req, res);
      });
    };
  };
  auto limit = [](size_t bytes) { return http::RouteOptions{.max_body = bytes}; };

  s.Route("GET", "/healthz",
          [&f](const Request&, Response& res) {
            Guard(res, [&] {
              f.db().Read([](SqlConnection& c) { c.Query("SELECT 1"); });
              SendJson(
                  res, 200,
                  {{"ok", true},
                   {"replica", f.options().replica},
                   {"database", f.db().dialect() == Dialect::kPostgres ? "postgresql" : "sqlite"}});
            });
          },
          {.priority = true});
  s.Route("GET", "/", [](const Request&, Response& res) {
    res.Set(std::string(DashboardHtml()), "text/html; charset=utf-8");
    res.SetHeader("Content-Security-Policy",
                  "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                  "connect-src 'self'; img-src 'self' data:");
    res.SetHeader("X-Frame-Options", "DENY");
  });

  // --- devices ---------------------------------------------------------------------------
  s.Route(
      "POST", "/api/v1/enroll",
      [&f](const Request& req, Response& res) {
        Guard(res, [&] { SendJson(res, 201, f.Enroll(Body(req), req.remote_addr)); });
      },
      limit(kControlBody));
  s.Route(
      "GET", "/api/v1/device/desired-state",
      device([&f, poll = options_.poll_secs](const Caller& c, const Request& req, Response& res) {
        DesiredState state = f.DesiredFor(c);
        res.SetHeader("ETag", state.etag);
        res.SetHeader("X-Outpost-Poll-Seconds", std::to_string(poll));
        if (req.Header("If-None-Match") == state.etag) {
          res.status = 304;
          return;
        }
        json body = f.DesiredStateBody(state);
        body["poll_secs"] = poll;
        SendJson(res, 200, body);
      }));
  s.Route("POST", "/api/v1/device/report",
          device([&f](const Caller& c, const Request& req, Response& res) {
            SendJson(res, 200, f.Report(c, Body(req, kReportJsonLimits)));
          }),
          limit(kReportBody));
  // OTLP/HTTP JSON: an agent's telemetry endpoint is <server>/api/v1/device/telemetry.
  s.Route("POST", "/api/v1/device/telemetry/v1/logs",
          device([&f](const Caller& c, const Request& req, Response& res) {
            json out =
                f.IntakeOtlpLogs(c, Body(req, kTelemetryJsonLimits), req.Header("Idempotency-Key"));
            SendJson(res, 200, {{"partialSuccess", json::object()}, {"outpost", out}});
          }),
          limit(kTelemetryBody));

  s.Route("GET", "/api/v1/devices",
          op(Scope::kRead, [&f](const Caller&, const Request& req, Response& res) {
            std::vector<std::pair<std::string, std::string>> filter;
            for (auto [it, end] = req.query.equal_range("tag"); it != end; ++it) {
              auto colon = it->second.find(':');
              if (colon == std::string::npos)
                Fail(ErrorCode::kInvalidArgument, "tag filters are key:value");
              filter.emplace_back(it->second.substr(0, colon), it->second.substr(colon + 1));
            }
            SendJson(res, 200,
                     f.ListDevices(filter, req.Query("after"), IntParam(req, "limit", 1000)));
          }));
  s.Route("GET", "/api/v1/devices/{id}",
          op(Scope::kRead, [&f](const Caller&, const Request& req, Response& res) {
            SendJson(res, 200, f.GetDevice(IdParam(req)));
          }));
  s.Route("PUT", "/api/v1/devices/{id}/tags",
          op(Scope::kWrite,
             [&f](const Caller& c, const Request& req, Response& res) {
               SendJson(res, 200, f.SetDeviceTags(c, IdParam(req), Body(req)));
             }),
          limit(kControlBody));
  s.Route("POST", "/api/v1/devices/{id}/revoke",
          op(Scope::kWrite,
             [&f](const Caller& c, const Request& req, Response& res) {
               f.RevokeDevice(c, IdParam(req));
               SendJson(res, 200, {{"revoked", IdParam(req)}});
             }),
          limit(kControlBody));
  s.Route("POST", "/api/v1/enrollment-tokens",
          op(Scope::kWrite,
             [&f](const Caller& c, const Request& req, Response& res) {
               SendJson(res, 201, f.CreateEnrollmentToken(c, Body(req)));
             }),
          limit(kControlBody));

  // --- deployments and rollouts ----------------------------------------------------------
  s.Route("GET", "/api/v1/deployments",
          op(Scope::kRead, [&f](const Caller&, const Request&, Response& res) {
            SendJson(res, 200, f.ListDeployments());
          }));
  s.Route("GET", "/api/v1/deployments/{name}",
          op(Scope::kRead, [&f](const Caller&, const Request& req, Response& res) {
            SendJson(res, 200, f.GetDeployment(NameParam(req)));
          }));
  s.Route("PUT", "/api/v1/deployments/{name}",
          op(Scope::kWrite,
             [&f](const Caller& c, const Request& req, Response& res) {
               SendJson(res, 200, f.PutDeployment(c, NameParam(req), Body(req, kDeploymentJson)));
             }),
          limit(kReportBody));
  s.Route("DELETE", "/api/v1/deployments/{name}",
          op(Scope::kWrite, [&f](const Caller& c, const Request& req, Response& res) {
            f.DeleteDeployment(c, NameParam(req));
            SendJson(res, 200, {{"deleted", NameParam(req)}});
          }));
  s.Route("POST", "/api/v1/deployments/{name}/rollouts",
          op(Scope::kWrite,
             [&f](const Caller& c, const Request& req, Response& res) {
               SendJson(res, 201, f.StartRollout(c, NameParam(req), Body(req)));
             }),
          limit(kControlBody));
  s.Route("GET", "/api/v1/rollouts",
          op(Scope::kRead, [&f](const Caller&, const Request& req, Response& res) {
            SendJson(res, 200, f.ListRollouts(req.Query("deployment")));
          }));
  s.Route("GET", "/api/v1/rollouts/{id}",
          op(Scope::kRead, [&f](const Caller&, const Request& req, Response& res) {
            SendJson(res, 200, f.GetRollout(NumberParam(req)));
          }));
  s.Route(
      "POST", "/api/v1/rollouts/{id}/{action}",
      op(Scope::kWrite,
         [&f](const Caller& c, const Request& req, Response& res) {
           const std::string& action = req.PathParam("action");
           if (action != "promote" && action != "pause" && action != "resume" && action != "abort")
             Fail(ErrorCode::kNotFound, "no such endpoint");
           SendJson(res, 200, f.ActOnRollout(c, NumberParam(req), action));
         }),
      limit(kControlBody));

  // --- telemetry and audit ---------------------------------------------------------------
  s.Route("GET", "/api/v1/events",
          op(Scope::kRead, [&f](const Caller&, const Request& req, Response& res) {
            SendJson(res, 200,
                     f.ListEvents(req.Query("model"), req.Query("version"),
                                  IntParam(req, "limit", 200)));
          }));
  s.Route("GET", "/api/v1/audit",
          op(Scope::kRead, [&f](const Caller&, const Request& req, Response& res) {
            SendJson(res, 200,
                     f.ListAudit(IntParam(req, "after", 0), IntParam(req, "limit", 1000)));
          }));
  s.Route("GET", "/api/v1/audit/head",
          op(Scope::kRead, [&f](const Caller&, const Request&, Response& res) {
            SendJson(res, 200, ToJson(f.SignAuditHead()));
          }));
  s.Route("GET", "/api/v1/audit/verify",
          op(Scope::kRead, [&f](const Caller&, const Request&, Response& res) {
            AuditVerdict v = f.VerifyAudit();
            SendJson(res, v.ok ? 200 : 409, ToJson(v));
          }));

  // --- the update repository: public (TUF metadata is signed; packages are signed) ---------
  s.Route("GET", "/repo/metadata/{name}", [&f](const Request& req, Response& res) {
    Guard(res, [&] {
      const std::string& name = NameParam(req);
      if (name.size() < 6 || name.substr(name.size() - 5) != ".json")
        Fail(ErrorCode::kNotFound, "no " + name);
      auto body = f.RepositoryMetadata(name);
      if (!body) Fail(ErrorCode::kNotFound, "no " + name);
      res.SetHeader("Cache-Control", "no-cache");
      res.Set(*body, "application/json");
    });
  });
  if (!f.options().repository_dir.empty()) {
    const std::filesystem::path targets = f.options().repository_dir / "targets";
    std::filesystem::create_directories(targets);
    s.Route("GET", "/repo/targets/{name}", [targets](const Request& req, Response& res) {
      Guard(res, [&] { http::ServeFile(targets / NameParam(req), req, res); });
    });
  }
  s.Route("GET", "/api/v1/repository/uploads/{name}",
          op(Scope::kWrite, [&f](const Caller&, const Request& req, Response& res) {
            SendJson(res, 200, f.UploadStatus(NameParam(req)));
          }));
  s.Route("PUT", "/api/v1/repository/uploads/{name}",
          op(Scope::kWrite,
             [&f](const Caller& c, const Request& req, Response& res) {
               SendJson(
                   res, 200,
                   f.UploadTarget(c, NameParam(req),
                                  static_cast<uint64_t>(IntParam(req, "offset", 0)), req.body));
             }),
          limit(kUploadBody));
  s.Route("POST", "/api/v1/repository/root",
          op(Scope::kAdmin, [&f](const Caller& c, const Request& req,
                                 Response& res) { SendJson(res, 200, f.PutRoot(c, req.body)); }),
          limit(kReportBody));
  s.Route(
      "POST", "/api/v1/repository/targets",
      op(Scope::kWrite, [&f](const Caller& c, const Request& req,
                             Response& res) { SendJson(res, 201, f.PublishTargets(c, req.body)); }),
      limit(kTargetsBody));
  s.Route("POST", "/api/v1/repository/roles/{name}",
          op(Scope::kWrite,
             [&f](const Caller& c, const Request& req, Response& res) {
               SendJson(res, 201, f.PublishRole(c, NameParam(req), req.body));
             }),
          limit(kTargetsBody));

  // --- operator tokens -------------------------------------------------------------------
  s.Route("GET", "/api/v1/tokens",
          op(Scope::kAdmin, [&f](const Caller&, const Request&, Response& res) {
            SendJson(res, 200, f.ListTokens());
          }));
  s.Route(
      "POST", "/api/v1/tokens",
      op(Scope::kAdmin, [&f](const Caller& c, const Request& req,
                             Response& res) { SendJson(res, 201, f.CreateToken(c, Body(req))); }),
      limit(kControlBody));
  s.Route("DELETE", "/api/v1/tokens/{id}",
          op(Scope::kAdmin, [&f](const Caller& c, const Request& req, Response& res) {
            f.RevokeToken(c, IdParam(req));
            SendJson(res, 200, {{"revoked", IdParam(req)}});
          }));
}

}  // namespace outpost::fleet
