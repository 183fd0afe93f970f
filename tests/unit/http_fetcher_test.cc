// The update fetcher against a real HTTP server on loopback that misbehaves on purpose.
#include "update/http_fetcher.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>

#include "core/atomic_file.h"
#include "core/error.h"
#include "package/sha256.h"

namespace outpost::tuf {
namespace {

class FetcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937 rng(3);
    target_.resize(1 << 20);
    for (auto& c : target_) c = static_cast<char>(rng());
    server_.Get("/meta/timestamp.json", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("{\"ts\":1}", "application/json");
    });
    server_.Get("/meta/endless.json", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("application/json", [](size_t, httplib::DataSink& sink) {
        std::string block(4096, 'x');
        return sink.write(block.data(), block.size());
      });
    });
    server_.Get("/meta/slow.json", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider(
          "application/json", [](size_t offset, httplib::DataSink& sink) {
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
            return offset < 100 && sink.write("x", 1);
          });
    });
    server_.Get("/targets/model.opkg", [this](const httplib::Request& req, httplib::Response& res) {
      ++requests_;
      if (req.ranges.empty() && drop_first_) {
        drop_first_ = false;
        // Half the file, then the connection drops.
        res.set_content_provider(target_.size(), "application/octet-stream",
                                 [this](size_t offset, size_t, httplib::DataSink& sink) {
                                   if (offset >= target_.size() / 2) return false;
                                   return sink.write(
                                       target_.data() + offset,
                                       std::min<size_t>(65536, target_.size() / 2 - offset));
                                 });
        return;
      }
      res.set_content(target_, "application/octet-stream");  // httplib answers Range with 206
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    dir_ = std::filesystem::temp_directory_path() / ("outpost-fetch-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    server_.stop();
    thread_.join();
    std::filesystem::remove_all(dir_);
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::string target_;
  std::atomic<bool> drop_first_{false};
  std::atomic<int> requests_{0};
  std::filesystem::path dir_;
};

ErrorCode CodeOf(const std::function<void()>& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  ADD_FAILURE() << "no error";
  return ErrorCode::kInternal;
}

TEST_F(FetcherTest, MetadataFetchesAndLimits) {
  HttpFetcher f(Url("/meta/"));
  EXPECT_EQ(f.Fetch("timestamp.json", 100).value(), "{\"ts\":1}");
  EXPECT_FALSE(f.Fetch("missing.json", 100).has_value());
  std::string message;
  EXPECT_EQ(CodeOf([&] { f.Fetch("endless.json", 16384); }, &message),
            ErrorCode::kPermissionDenied);
  EXPECT_NE(message.find("endless data"), std::string::npos);
  EXPECT_LT(f.bytes_received(), 16384u + 100);  // stopped at the limit, not after it
  HttpLimits slow;
  slow.min_bytes_per_second = 100;
  slow.slow_window_s = 1;
  HttpFetcher g(Url("/meta/"), slow);
  EXPECT_EQ(CodeOf([&] { g.Fetch("slow.json", 16384); }, &message), ErrorCode::kUnavailable);
  EXPECT_NE(message.find("slow retrieval"), std::string::npos);
  HttpFetcher nobody("http://127.0.0.1:1/");
  EXPECT_EQ(CodeOf([&] { nobody.Fetch("timestamp.json", 100); }), ErrorCode::kUnavailable);
}

TEST_F(FetcherTest, DownloadResumesWithoutRefetching) {
  drop_first_ = true;
  HttpFetcher f(Url("/meta/"));
  auto dest = dir_ / "model.opkg";
  f.Download(Url("/targets/model.opkg"), dest, target_.size(), {{"sha256", Sha256Hex(target_)}});
  EXPECT_EQ(ReadFile(dest), target_);
  EXPECT_FALSE(std::filesystem::exists(dest.string() + ".part"));
  EXPECT_GE(requests_.load(), 2);
  // Half, then the other half: not the whole file again.
  EXPECT_LE(f.bytes_received(), target_.size() + 65536);
}

TEST_F(FetcherTest, DownloadRefusesWrongBytes) {
  HttpFetcher f(Url("/meta/"));
  auto dest = dir_ / "model.opkg";
  std::string message;
  EXPECT_EQ(CodeOf(
                [&] {
                  f.Download(Url("/targets/model.opkg"), dest, target_.size(),
                             {{"sha256", std::string(64, '0')}});
                },
                &message),
            ErrorCode::kPermissionDenied);
  EXPECT_NE(message.find("sha256 differs from the one signed for it"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dest));
  EXPECT_FALSE(std::filesystem::exists(dest.string() + ".part"));
  EXPECT_EQ(CodeOf(
                [&] {
                  f.Download(Url("/targets/model.opkg"), dest, 1000,
                             {{"sha256", Sha256Hex(target_.substr(0, 1000))}});
                },
                &message),
            ErrorCode::kPermissionDenied);
  EXPECT_NE(message.find("more than the 1000 signed bytes"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dest));
}

}  // namespace
}  // namespace outpost::tuf
