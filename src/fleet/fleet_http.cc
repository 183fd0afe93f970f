#include "fleet/fleet_http.h"

#include <fmt/format.h>
#include <httplib.h>
#include <sys/socket.h>

#include <filesystem>

#include "core/logging.h"
#include "fleet/dashboard.h"

namespace outpost::fleet {
namespace {

void SendJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

template <typename F>
void Guard(httplib::Response& res, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kUnavailable) res.set_header("Retry-After", "1");
    if (e.code() == ErrorCode::kUnauthenticated)
      res.set_header("WWW-Authenticate", "Bearer realm=\"outpost-fleet\"");
    SendJson(res, HttpStatusOf(e.code()), {{"error", e.what()}});
  } catch (const json::exception& e) {
    SendJson(res, 400, {{"error", std::string("bad JSON: ") + e.what()}});
  } catch (const std::exception& e) {
    Log(LogSeverity::kError, "fleet", "handler_failed", std::string("handler failed: ") + e.what());
    SendJson(res, 500, {{"error", e.what()}});
  }
}

json Body(const httplib::Request& req) {
  json j = json::parse(req.body, nullptr, false);
  if (j.is_discarded()) Fail(ErrorCode::kInvalidArgument, "the body is not valid JSON");
  return j;
}

std::string PathAndQuery(const httplib::Request& req) {
  // The target as the client sent it: what a device signed.
  return req.target.empty() ? req.path : req.target;
}

int64_t IntParam(const httplib::Request& req, const char* name, int64_t fallback) {
  if (!req.has_param(name)) return fallback;
  try {
    return std::stoll(req.get_param_value(name));
  } catch (const std::exception&) {
    Fail(ErrorCode::kInvalidArgument, std::string(name) + " must be an integer");
  }
}

}  // namespace

FleetServer::FleetServer(Fleet& fleet, FleetServerOptions options)
    : fleet_(fleet), options_(std::move(options)), http_(std::make_unique<httplib::Server>()) {
  http_->new_task_queue = [n = options_.threads] { return new httplib::ThreadPool(n); };
  http_->set_payload_max_length(4 << 20);
  // Headers and body leave in separate writes: without this, Nagle's algorithm and the peer's
  // delayed ACK hold the second one back for 40 ms.
  http_->set_tcp_nodelay(true);
  http_->set_read_timeout(30, 0);
  http_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  Routes();
}

FleetServer::~FleetServer() { Stop(); }

void FleetServer::Bind() {
  if (options_.port == 0) {
    port_ = http_->bind_to_any_port(options_.host);
  } else if (http_->bind_to_port(options_.host, options_.port)) {
    port_ = options_.port;
  }
  if (port_ <= 0)
    Fail(ErrorCode::kUnavailable,
         fmt::format("cannot listen on {}:{} (in use?)", options_.host, options_.port));
  controller_ = std::thread([this] { ControllerLoop(); });
}

void FleetServer::Serve() { http_->listen_after_bind(); }

void FleetServer::Stop() {
  stop_ = true;
  http_->stop();
  if (controller_.joinable()) controller_.join();
}

void FleetServer::ControllerLoop() {
  while (!stop_) {
    try {
      fleet_.TickRollouts();
      fleet_.RefreshTimestamp();
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
  auto& s = *http_;
  Fleet& f = fleet_;
  // An operator handler: the token is checked for the scope first.
  auto op = [&f](Scope scope, auto handler) {
    return [&f, scope, handler](const httplib::Request& req, httplib::Response& res) {
      Guard(res, [&] {
        Caller caller =
            f.AuthenticateOperator(req.get_header_value("Authorization"), req.remote_addr, scope);
        handler(caller, req, res);
      });
    };
  };
  auto device = [&f](auto handler) {
    return [&f, handler](const httplib::Request& req, httplib::Response& res) {
      Guard(res, [&] {
        DeviceSignature sig{req.get_header_value("X-Outpost-Device"),
                            req.get_header_value("X-Outpost-Time"),
                            req.get_header_value("X-Outpost-Signature")};
        Caller caller =
            f.AuthenticateDevice(sig, req.method, PathAndQuery(req), req.body, req.remote_addr);
        handler(caller, req, res);
      });
    };
  };

  s.Get("/healthz", [&f](const httplib::Request&, httplib::Response& res) {
    Guard(res, [&] {
      f.db().Read([](SqlConnection& c) { c.Query("SELECT 1"); });
      SendJson(res, 200,
               {{"ok", true},
                {"replica", f.options().replica},
                {"database", f.db().dialect() == Dialect::kPostgres ? "postgresql" : "sqlite"}});
    });
  });
  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(DashboardHtml()), "text/html; charset=utf-8");
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                   "connect-src 'self'; img-src 'self' data:");
    res.set_header("X-Frame-Options", "DENY");
  });

  // --- devices ---------------------------------------------------------------------------
  s.Post("/api/v1/enroll", [&f](const httplib::Request& req, httplib::Response& res) {
    Guard(res, [&] { SendJson(res, 201, f.Enroll(Body(req), req.remote_addr)); });
  });
  s.Get("/api/v1/device/desired-state",
        device([&f, poll = options_.poll_secs](const Caller& c, const httplib::Request& req,
                                               httplib::Response& res) {
          DesiredState state = f.DesiredFor(c);
          res.set_header("ETag", state.etag);
          res.set_header("X-Outpost-Poll-Seconds", std::to_string(poll));
          if (req.get_header_value("If-None-Match") == state.etag) {
            res.status = 304;
            return;
          }
          json body = f.DesiredStateBody(state);
          body["poll_secs"] = poll;
          SendJson(res, 200, body);
        }));
  s.Post("/api/v1/device/report",
         device([&f](const Caller& c, const httplib::Request& req, httplib::Response& res) {
           SendJson(res, 200, f.Report(c, Body(req)));
         }));
  // OTLP/HTTP JSON: an agent's telemetry endpoint is <server>/api/v1/device/telemetry.
  s.Post("/api/v1/device/telemetry/v1/logs",
         device([&f](const Caller& c, const httplib::Request& req, httplib::Response& res) {
           json out = f.IntakeOtlpLogs(c, Body(req), req.get_header_value("Idempotency-Key"));
           SendJson(res, 200, {{"partialSuccess", json::object()}, {"outpost", out}});
         }));

  s.Get("/api/v1/devices",
        op(Scope::kRead, [&f](const Caller&, const httplib::Request& req, httplib::Response& res) {
          std::vector<std::pair<std::string, std::string>> filter;
          for (auto [it, end] = req.params.equal_range("tag"); it != end; ++it) {
            auto colon = it->second.find(':');
            if (colon == std::string::npos)
              Fail(ErrorCode::kInvalidArgument, "tag filters are key:value");
            filter.emplace_back(it->second.substr(0, colon), it->second.substr(colon + 1));
          }
          SendJson(
              res, 200,
              f.ListDevices(filter, req.get_param_value("after"), IntParam(req, "limit", 1000)));
        }));
  s.Get(R"(/api/v1/devices/([A-Za-z0-9_]+))",
        op(Scope::kRead, [&f](const Caller&, const httplib::Request& req, httplib::Response& res) {
          SendJson(res, 200, f.GetDevice(req.matches[1]));
        }));
  s.Put(
      R"(/api/v1/devices/([A-Za-z0-9_]+)/tags)",
      op(Scope::kWrite, [&f](const Caller& c, const httplib::Request& req, httplib::Response& res) {
        SendJson(res, 200, f.SetDeviceTags(c, req.matches[1], Body(req)));
      }));
  s.Post(
      R"(/api/v1/devices/([A-Za-z0-9_]+)/revoke)",
      op(Scope::kWrite, [&f](const Caller& c, const httplib::Request& req, httplib::Response& res) {
        f.RevokeDevice(c, req.matches[1]);
        SendJson(res, 200, {{"revoked", std::string(req.matches[1])}});
      }));
  s.Post(
      "/api/v1/enrollment-tokens",
      op(Scope::kWrite, [&f](const Caller& c, const httplib::Request& req, httplib::Response& res) {
        SendJson(res, 201, f.CreateEnrollmentToken(c, Body(req)));
      }));

  // --- deployments and rollouts ----------------------------------------------------------
  s.Get("/api/v1/deployments",
        op(Scope::kRead, [&f](const Caller&, const httplib::Request&, httplib::Response& res) {
          SendJson(res, 200, f.ListDeployments());
        }));
  s.Get(R"(/api/v1/deployments/([A-Za-z0-9][A-Za-z0-9_.-]*))",
        op(Scope::kRead, [&f](const Caller&, const httplib::Request& req, httplib::Response& res) {
          SendJson(res, 200, f.GetDeployment(req.matches[1]));
        }));
  s.Put(
      R"(/api/v1/deployments/([A-Za-z0-9][A-Za-z0-9_.-]*))",
      op(Scope::kWrite, [&f](const Caller& c, const httplib::Request& req, httplib::Response& res) {
        SendJson(res, 200, f.PutDeployment(c, req.matches[1], Body(req)));
      }));
  s.Delete(
      R"(/api/v1/deployments/([A-Za-z0-9][A-Za-z0-9_.-]*))",
      op(Scope::kWrite, [&f](const Caller& c, const httplib::Request& req, httplib::Response& res) {
        f.DeleteDeployment(c, req.matches[1]);
        SendJson(res, 200, {{"deleted", std::string(req.matches[1])}});
      }));
  s.Post(
      R"(/api/v1/deployments/([A-Za-z0-9][A-Za-z0-9_.-]*)/rollouts)",
      op(Scope::kWrite, [&f](const Caller& c, const httplib::Request& req, httplib::Response& res) {
        SendJson(res, 201, f.StartRollout(c, req.matches[1], Body(req)));
      }));
  s.Get("/api/v1/rollouts",
        op(Scope::kRead, [&f](const Caller&, const httplib::Request& req, httplib::Response& res) {
          SendJson(res, 200, f.ListRollouts(req.get_param_value("deployment")));
        }));
  s.Get(R"(/api/v1/rollouts/(\d+))",
        op(Scope::kRead, [&f](const Caller&, const httplib::Request& req, httplib::Response& res) {
          SendJson(res, 200, f.GetRollout(std::stoll(req.matches[1])));
        }));
  s.Post(
      R"(/api/v1/rollouts/(\d+)/(promote|pause|resume|abort))",
      op(Scope::kWrite, [&f](const Caller& c, const httplib::Request& req, httplib::Response& res) {
        SendJson(res, 200, f.ActOnRollout(c, std::stoll(req.matches[1]), req.matches[2]));
      }));

  // --- telemetry and audit ---------------------------------------------------------------
  s.Get("/api/v1/events",
        op(Scope::kRead, [&f](const Caller&, const httplib::Request& req, httplib::Response& res) {
          SendJson(res, 200,
                   f.ListEvents(req.get_param_value("model"), req.get_param_value("version"),
                                IntParam(req, "limit", 200)));
        }));
  s.Get("/api/v1/audit",
        op(Scope::kRead, [&f](const Caller&, const httplib::Request& req, httplib::Response& res) {
          SendJson(res, 200, f.ListAudit(IntParam(req, "after", 0), IntParam(req, "limit", 1000)));
        }));
  s.Get("/api/v1/audit/verify",
        op(Scope::kRead, [&f](const Caller&, const httplib::Request&, httplib::Response& res) {
          AuditVerdict v = f.VerifyAudit();
          SendJson(res, v.ok ? 200 : 409, ToJson(v));
        }));

  // --- the update repository: public (TUF metadata is signed; packages are signed) ---------
  s.Get(R"(/repo/metadata/([A-Za-z0-9][A-Za-z0-9._-]*\.json))",
        [&f](const httplib::Request& req, httplib::Response& res) {
          Guard(res, [&] {
            auto body = f.RepositoryMetadata(req.matches[1]);
            if (!body) Fail(ErrorCode::kNotFound, "no " + std::string(req.matches[1]));
            res.set_header("Cache-Control", "no-cache");
            res.set_content(*body, "application/json");
          });
        });
  if (!f.options().repository_dir.empty()) {
    std::filesystem::create_directories(f.options().repository_dir / "targets");
    s.set_mount_point("/repo/targets", (f.options().repository_dir / "targets").string());
  }
  s.Get(R"(/api/v1/repository/uploads/([A-Za-z0-9][A-Za-z0-9._-]*))",
        op(Scope::kWrite, [&f](const Caller&, const httplib::Request& req, httplib::Response& res) {
          SendJson(res, 200, f.UploadStatus(req.matches[1]));
        }));
  s.Put(
      R"(/api/v1/repository/uploads/([A-Za-z0-9][A-Za-z0-9._-]*))",
      op(Scope::kWrite, [&f](const Caller& c, const httplib::Request& req, httplib::Response& res) {
        SendJson(res, 200,
                 f.UploadTarget(c, req.matches[1],
                                static_cast<uint64_t>(IntParam(req, "offset", 0)), req.body));
      }));
  s.Post(
      "/api/v1/repository/root",
      op(Scope::kAdmin, [&f](const Caller& c, const httplib::Request& req, httplib::Response& res) {
        SendJson(res, 200, f.PutRoot(c, req.body));
      }));
  s.Post(
      "/api/v1/repository/targets",
      op(Scope::kWrite, [&f](const Caller& c, const httplib::Request& req, httplib::Response& res) {
        SendJson(res, 201, f.PublishTargets(c, req.body));
      }));

  // --- operator tokens -------------------------------------------------------------------
  s.Get("/api/v1/tokens",
        op(Scope::kAdmin, [&f](const Caller&, const httplib::Request&, httplib::Response& res) {
          SendJson(res, 200, f.ListTokens());
        }));
  s.Post("/api/v1/tokens", op(Scope::kAdmin, [&f](const Caller& c, const httplib::Request& req,
                                                  httplib::Response& res) {
           SendJson(res, 201, f.CreateToken(c, Body(req)));
         }));
  s.Delete(
      R"(/api/v1/tokens/([A-Za-z0-9_]+))",
      op(Scope::kAdmin, [&f](const Caller& c, const httplib::Request& req, httplib::Response& res) {
        f.RevokeToken(c, req.matches[1]);
        SendJson(res, 200, {{"revoked", std::string(req.matches[1])}});
      }));
}

}  // namespace outpost::fleet
