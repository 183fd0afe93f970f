// The agent's one HTTP client against a real server on loopback: its defaults hold for every
// caller (no redirects followed, bounded answers, only http and https, no answer in time is an
// error), and streaming and headers reach the caller.
#include "net/http_client.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <thread>

namespace outpost::net {
namespace {

class HttpClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.Get("/redirect", [](const httplib::Request&, httplib::Response& res) {
      res.set_redirect("/secret-elsewhere");
    });
    server_.Get("/secret-elsewhere", [this](const httplib::Request&, httplib::Response& res) {
      ++followed_;
      res.set_content("followed", "text/plain");
    });
    server_.Get("/big", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(100000, 'x'), "text/plain");
    });
    server_.Get("/silent", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("text/plain", [](size_t, httplib::DataSink& sink) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        sink.done();
        return true;
      });
    });
    server_.Post("/echo", [](const httplib::Request& req, httplib::Response& res) {
      res.set_header("ETag", "\"v7\"");
      res.set_content(req.method + " " + req.get_header_value("X-Test") + " " + req.body,
                      "text/plain");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  void TearDown() override {
    server_.stop();
    thread_.join();
  }
  std::string Url(const std::string& path) {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> followed_{0};
};

TEST_F(HttpClientTest, RedirectsAreNotFollowedUnlessAsked) {
  HttpRequest r;
  r.url = Url("/redirect");
  HttpResponse res = Perform(r);
  EXPECT_EQ(res.status, 302);
  EXPECT_EQ(followed_.load(), 0);
  r.follow_redirects = true;
  res = Perform(r);
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.body, "followed");
}

TEST_F(HttpClientTest, AnswersAreBoundedAndStreamed) {
  HttpRequest r;
  r.url = Url("/big");
  r.max_response_bytes = 1000;
  HttpResponse res = Perform(r);
  EXPECT_TRUE(res.over_limit);
  EXPECT_FALSE(res.ok());
  EXPECT_NE(res.error.find("more than 1000 bytes"), std::string::npos);
  r.max_response_bytes = 1u << 20;
  size_t streamed = 0;
  r.on_body = [&](std::string_view chunk) {
    streamed += chunk.size();
    return true;
  };
  res = Perform(r);
  EXPECT_TRUE(res.ok());
  EXPECT_EQ(streamed, 100000u);
  EXPECT_TRUE(res.body.empty());  // streamed, not kept
  // The caller stops a stream by returning false.
  r.on_body = [](std::string_view) { return false; };
  EXPECT_FALSE(Perform(r).ok());
}

TEST_F(HttpClientTest, MethodHeadersBodyAndResponseHeaders) {
  HttpRequest r;
  r.method = "POST";
  r.url = Url("/echo");
  r.headers = {"X-Test: yes"};
  r.body = "payload";
  std::string etag;
  r.on_header = [&](std::string_view line) {
    if (line.rfind("ETag:", 0) == 0) etag = std::string(line.substr(6));
  };
  HttpResponse res = Perform(r);
  EXPECT_TRUE(res.ok()) << res.error;
  EXPECT_EQ(res.body, "POST yes payload");
  EXPECT_EQ(etag, "\"v7\"");
}

TEST_F(HttpClientTest, SilenceAndOtherSchemesAreErrors) {
  HttpRequest r;
  r.url = Url("/silent");
  r.first_byte_timeout = std::chrono::milliseconds(200);
  HttpResponse res = Perform(r);
  EXPECT_TRUE(res.no_first_byte);
  EXPECT_TRUE(res.timed_out);
  r.first_byte_timeout = std::chrono::milliseconds(0);
  r.timeout = std::chrono::milliseconds(300);
  EXPECT_TRUE(Perform(r).timed_out);
  r.url = "file:///etc/passwd";
  res = Perform(r);
  EXPECT_EQ(res.status, 0);
  EXPECT_FALSE(res.error.empty());
  EXPECT_TRUE(res.body.empty());
  r.url = "http://127.0.0.1:1/";
  EXPECT_FALSE(Perform(r).error.empty());
}

TEST(Backoff, DoublesWithJitterUpToTheCap) {
  using std::chrono::milliseconds;
  for (int i = 0; i < 50; ++i) {
    auto first = Backoff(1, milliseconds(200), milliseconds(5000));
    EXPECT_GE(first.count(), 160);
    EXPECT_LE(first.count(), 240);
    auto third = Backoff(3, milliseconds(200), milliseconds(5000));
    EXPECT_GE(third.count(), 640);
    EXPECT_LE(third.count(), 960);
    EXPECT_LE(Backoff(30, milliseconds(200), milliseconds(5000)).count(), 6000);
  }
}

}  // namespace
}  // namespace outpost::net
