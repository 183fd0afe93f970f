#include "telemetry/webhook.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <chrono>

#include "core/curl_global.h"
#include "core/logging.h"

namespace outpost {
namespace {

size_t Ignore(char*, size_t size, size_t n, void*) { return size * n; }

}  // namespace

WebhookSender::WebhookSender(std::string url, size_t max_queue)
    : url_(std::move(url)), max_queue_(max_queue) {
  EnsureCurlInitialised();
  thread_ = std::thread([this] {
    for (;;) {
      std::string body;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        body = std::move(queue_.front());
        queue_.pop_front();
      }
      bool sent = false;
      for (int attempt = 0; attempt < 3 && !sent; ++attempt) {
        if (attempt) {
          std::unique_lock lock(mu_);
          if (cv_.wait_for(lock, std::chrono::milliseconds(500 << attempt), [&] { return stop_; }))
            return;
        }
        sent = Send(body);
      }
      if (sent) {
        ++delivered_;
      } else {
        ++dropped_;
        Log(LogSeverity::kWarn, "telemetry", "webhook_failed",
            "webhook " + url_ + ": an event was not delivered after 3 attempts");
      }
    }
  });
}

WebhookSender::~WebhookSender() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WebhookSender::Post(std::string json_body) {
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= max_queue_) {
      ++dropped_;
      return;
    }
    queue_.push_back(std::move(json_body));
  }
  cv_.notify_one();
}

bool WebhookSender::Send(const std::string& body) {
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url_.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Ignore);
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  return rc == CURLE_OK && status / 100 == 2;
}

}  // namespace outpost
