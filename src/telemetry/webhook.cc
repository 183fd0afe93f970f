#include "telemetry/webhook.h"

#include <fmt/format.h>

#include <chrono>

#include "core/logging.h"
#include "net/http_client.h"

namespace outpost {
WebhookSender::WebhookSender(std::string url, size_t max_queue)
    : url_(std::move(url)), max_queue_(max_queue) {
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
  net::HttpRequest r;
  r.method = "POST";
  r.url = url_;
  r.headers = {"Content-Type: application/json"};
  r.body = body;
  r.timeout = std::chrono::milliseconds(5000);
  r.max_response_bytes = 64u << 10;  // the answer is not read
  return net::Perform(r).ok();
}

}  // namespace outpost
