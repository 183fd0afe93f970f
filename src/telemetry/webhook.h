// Fire-and-forget JSON webhooks (drift events, ...): a bounded queue and one sender thread;
// three attempts with backoff, then the event is dropped and counted. Nothing waits on it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

namespace outpost {

class WebhookSender {
 public:
  explicit WebhookSender(std::string url, size_t max_queue = 64);
  ~WebhookSender();
  void Post(std::string json_body);
  uint64_t delivered() const { return delivered_; }
  uint64_t dropped() const { return dropped_; }

 private:
  bool Send(const std::string& body);
  std::string url_;
  size_t max_queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  bool stop_ = false;
  std::atomic<uint64_t> delivered_{0}, dropped_{0};
  std::thread thread_;
};

}  // namespace outpost
