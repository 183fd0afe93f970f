// http/browser_guard: what a browser could be made to send is refused (DNS rebinding, pages on
// other origins, preflight-free form posts), what programs send is not, and allowed origins
// get CORS answers.
#include "http/browser_guard.h"

#include <gtest/gtest.h>

namespace outpost::http {
namespace {

Request Make(std::string method, std::vector<std::pair<std::string, std::string>> headers,
             std::string body = "") {
  Request r;
  r.method = std::move(method);
  r.path = "/v2/repository/packages";
  for (auto& [k, v] : headers) r.headers.Add(k, v);
  r.body = std::move(body);
  return r;
}

int StatusOf(const BrowserGuard& g, const Request& r) {
  const auto refusal = g.Check(r);
  return refusal.status ? refusal.status : 200;
}

TEST(BrowserGuard, HostsOnlyThoseThisServerAnswersTo) {
  BrowserGuard g({.allowed_hosts = {"Device.Example"}, .allowed_origins = {}});
  for (const char* host : {"127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST:8000",
                           "[::1]:8000", "[::1]", "192.168.1.20:8000", "device.example:8000"})
    EXPECT_EQ(StatusOf(g, Make("GET", {{"Host", host}})), 200) << host;
  // A rebinding page's requests carry its own name.
  for (const char* host : {"attacker.example", "attacker.example:8000", "127.0.0.1.nip.io", "[::1",
                           "", "localhost.attacker.example"})
    EXPECT_EQ(StatusOf(g, Make("GET", {{"Host", host}})), 403) << host;
  EXPECT_NE(g.Check(Make("GET", {{"Host", "evil.example"}})).message.find("http_allowed_hosts"),
            std::string::npos);
  Request no_host = Make("GET", {});
  EXPECT_EQ(StatusOf(g, no_host), 400);
  no_host.version_minor = 0;  // HTTP/1.0 has no Host
  EXPECT_EQ(StatusOf(g, no_host), 200);
}

TEST(BrowserGuard, OriginsOnlyThoseConfigured) {
  BrowserGuard none({});
  EXPECT_EQ(StatusOf(none, Make("GET", {{"Host", "localhost"}, {"Origin", "https://a.example"}})),
            403);
  EXPECT_EQ(StatusOf(none, Make("GET", {{"Host", "localhost"}, {"Origin", "null"}})), 403);
  BrowserGuard some({.allowed_hosts = {}, .allowed_origins = {"https://app.example"}});
  EXPECT_EQ(StatusOf(some, Make("POST",
                                {{"Host", "localhost"},
                                 {"Origin", "https://app.example"},
                                 {"Content-Type", "application/json"}},
                                "{}")),
            200);
  EXPECT_EQ(
      StatusOf(some, Make("GET", {{"Host", "localhost"}, {"Origin", "https://app.example:8443"}})),
      403);
}

TEST(BrowserGuard, StateChangesNeedATypeAPageCannotSendWithoutPreflight) {
  BrowserGuard g({});
  auto post = [&](std::vector<std::pair<std::string, std::string>> h, std::string body) {
    h.emplace_back("Host", "127.0.0.1");
    h.emplace_back("Sec-Fetch-Site", "cross-site");
    return StatusOf(g, Make("POST", std::move(h), std::move(body)));
  };
  EXPECT_EQ(post({{"Content-Type", "text/plain"}}, "{}"), 415);
  EXPECT_EQ(post({{"Content-Type", "TEXT/PLAIN; charset=utf-8"}}, "{}"), 415);
  EXPECT_EQ(post({{"Content-Type", "application/x-www-form-urlencoded"}}, "a=b"), 415);
  EXPECT_EQ(post({{"Content-Type", "multipart/form-data; boundary=x"}}, "--x"), 415);
  EXPECT_EQ(post({}, "{}"), 415);  // a Blob without a type
  // As the server checks it: from the head, the body declared but not read yet.
  EXPECT_EQ(post({{"Content-Length", "2"}}, ""), 415);
  EXPECT_EQ(post({{"Transfer-Encoding", "chunked"}}, ""), 415);
  EXPECT_EQ(post({{"Content-Length", "0"}}, ""), 200);
  EXPECT_EQ(post({{"Content-Type", "application/json"}}, "{}"), 200);
  EXPECT_EQ(post({{"Content-Type", "application/octet-stream"}}, "x"), 200);
  EXPECT_EQ(post({{"Inference-Header-Content-Length", "2"}}, "{}xx"), 200);
  EXPECT_EQ(post({}, ""), 200);  // no body: a browser would still send Origin
  EXPECT_EQ(StatusOf(g, Make("GET", {{"Host", "localhost"},
                                     {"Sec-Fetch-Mode", "no-cors"},
                                     {"Content-Type", "text/plain"}})),
            200);
  EXPECT_EQ(
      StatusOf(
          g,
          Make("PUT",
               {{"Host", "localhost"}, {"Sec-Fetch-Dest", "empty"}, {"Content-Type", "text/plain"}},
               "x")),
      415);
  // A program's form post (curl -d) is not a browser's: no fetch metadata, no Origin.
  EXPECT_EQ(StatusOf(g, Make("POST",
                             {{"Host", "localhost"},
                              {"Content-Type", "application/x-www-form-urlencoded"}},
                             "{}")),
            200);
}

}  // namespace
}  // namespace outpost::http
