#include "http/browser_guard.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>

#include "core/names.h"

namespace outpost::http {
namespace {

// "name:port" or "[v6]:port" without the port; "" for what is neither.
std::string HostName(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string_view::npos) return "";
    return std::string(host.substr(0, close + 1));
  }
  if (const size_t colon = host.rfind(':'); colon != std::string_view::npos)
    host = host.substr(0, colon);
  return AsciiLower(host);
}

bool IsIpLiteral(const std::string& name) {
  unsigned char buf[16];
  if (::inet_pton(AF_INET, name.c_str(), buf) == 1) return true;
  return name.size() > 2 && name.front() == '[' &&
         ::inet_pton(AF_INET6, name.substr(1, name.size() - 2).c_str(), buf) == 1;
}

bool StateChanging(const std::string& method) {
  return method != "GET" && method != "HEAD" && method != "OPTIONS";
}

// The media types a page may send cross-origin without a preflight (the Fetch standard's
// CORS-safelisted Content-Type values).
bool CorsSafelistedType(std::string_view content_type) {
  const std::string type = AsciiLower(content_type.substr(0, content_type.find(';')));
  const auto first = type.find_first_not_of(" \t");
  const auto last = type.find_last_not_of(" \t");
  const std::string bare = first == std::string::npos ? "" : type.substr(first, last - first + 1);
  return bare == "text/plain" || bare == "application/x-www-form-urlencoded" ||
         bare == "multipart/form-data";
}

}  // namespace

BrowserGuard::BrowserGuard(BrowserPolicy policy) : policy_(std::move(policy)) {
  for (auto& h : policy_.allowed_hosts) h = AsciiLower(h);
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) == 0) hostname_ = AsciiLower(name);
}

bool BrowserGuard::HostAllowed(std::string_view host) const {
  const std::string name = HostName(host);
  if (name.empty()) return false;
  if (IsIpLiteral(name) || name == "localhost" || name == "localhost.") return true;
  if (!hostname_.empty() && (name == hostname_ || name == hostname_ + ".local")) return true;
  return std::find(policy_.allowed_hosts.begin(), policy_.allowed_hosts.end(), name) !=
         policy_.allowed_hosts.end();
}

bool BrowserGuard::OriginAllowed(const std::string& origin) const {
  return std::find(policy_.allowed_origins.begin(), policy_.allowed_origins.end(), origin) !=
         policy_.allowed_origins.end();
}

Refusal BrowserGuard::Check(const Request& req) const {
  if (!req.HasHeader("Host")) {
    if (req.version_minor >= 1) return Refusal{400, "an HTTP/1.1 request needs a Host header"};
  } else if (!HostAllowed(req.Header("Host"))) {
    return Refusal{403,
                   "Host '" + req.Header("Host") +
                       "' is not a name this server answers to (add it to http_allowed_hosts)"};
  }
  if (req.HasHeader("Origin") && !OriginAllowed(req.Header("Origin"))) {
    return Refusal{403, "requests from the web page at origin '" + req.Header("Origin") +
                            "' are not allowed (add it to http_cors_origins)"};
  }
  // Programs (curl -d, SDKs, the tests' clients) send no fetch metadata and may send any type;
  // what a browser sends (every current one adds Sec-Fetch-* or Origin) must be a type that
  // would have needed a preflight.
  const bool from_browser = req.HasHeader("Origin") || req.HasHeader("Sec-Fetch-Site") ||
                            req.HasHeader("Sec-Fetch-Mode") || req.HasHeader("Sec-Fetch-Dest");
  if (from_browser && StateChanging(req.method)) {
    const std::string& type = req.Header("Content-Type");
    // Checked from the head: the body has not been read (its length is declared, or chunked).
    const bool has_body = !req.body.empty() || req.HasHeader("Transfer-Encoding") ||
                          (req.HasHeader("Content-Length") && req.Header("Content-Length") != "0");
    if (req.HasHeader("Content-Type")
            ? CorsSafelistedType(type)
            : has_body && !req.HasHeader("Inference-Header-Content-Length")) {
      return Refusal{415, req.method + " " + req.path + " does not take " +
                              (type.empty() ? std::string("a body without a Content-Type")
                                            : "Content-Type " + type) +
                              ": send application/json (or the binary tensor extension)"};
    }
  }
  return {};
}

void BrowserGuard::Install(Server& server) const {
  server.Admit([this](Request& req, const RouteOptions&) { return Check(req); });
  server.Use([](const Request& req, Response& res, const Handler& handler) {
    handler(req, res);
    if (req.HasHeader("Origin")) {  // allowed, or Check() would have refused it
      res.SetHeader("Access-Control-Allow-Origin", req.Header("Origin"));
      res.SetHeader("Vary", "Origin");
      res.SetHeader("Access-Control-Expose-Headers",
                    "X-Request-Id, Inference-Header-Content-Length, Retry-After");
    }
  });
  server.SetPreflight([](const Request& req, Response& res) {
    // Only reached for an allowed origin (the admission check runs first).
    if (!req.HasHeader("Origin")) {
      res.status = 405;
      res.Set(JsonErrorBody("OPTIONS answers CORS preflights only"), "application/json");
      return;
    }
    res.status = 204;
    res.SetHeader("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE");
    res.SetHeader("Access-Control-Allow-Headers",
                  "Authorization, Content-Type, X-Api-Key, X-Request-Id, "
                  "Inference-Header-Content-Length");
    res.SetHeader("Access-Control-Max-Age", "600");
  });
}

}  // namespace outpost::http
