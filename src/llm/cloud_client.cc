#include "llm/cloud_client.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <chrono>
#include <thread>

#include "core/curl_global.h"
#include "core/logging.h"

namespace outpost {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Transfer {
  CURL* handle = nullptr;
  const std::function<void(const json&)>* on_event = nullptr;
  const std::function<bool()>* cancelled = nullptr;
  bool stream = false;
  long status = 0;
  std::string retry_after;
  std::string body;     // non-streaming, or an error's body
  std::string pending;  // a stream's unfinished line
  bool forwarded = false;
  bool done = false;      // [DONE] seen
  bool finished = false;  // a choice's finish_reason seen
  std::string stream_error;
  Clock::time_point start = Clock::now();
  bool got_bytes = false;
  std::chrono::milliseconds first_byte_timeout{0};
  bool first_byte_timed_out = false;

  void Line(std::string_view line) {
    if (line.empty() || line[0] == ':') return;  // event separator or comment
    if (line.rfind("data:", 0) != 0) return;     // event:/id:/retry: carry nothing we use
    std::string_view data = line.substr(5);
    if (!data.empty() && data[0] == ' ') data.remove_prefix(1);
    if (data == "[DONE]") {
      done = true;
      return;
    }
    json event = json::parse(data, nullptr, false);
    if (event.is_discarded()) {
      stream_error = "the cloud sent an event that is not JSON";
      return;
    }
    if (event.contains("error")) {
      stream_error = "the cloud reported an error mid-stream: " +
                     event["error"].value("message", event["error"].dump());
      return;
    }
    if (event.contains("choices") && event["choices"].is_array())
      for (const auto& c : event["choices"])
        if (c.is_object() && c.contains("finish_reason") && !c["finish_reason"].is_null())
          finished = true;
    forwarded = true;
    (*on_event)(event);
  }
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view h(data, size * n);
  if (h.rfind("HTTP/", 0) == 0) {
    t->retry_after.clear();
  } else if (h.size() > 12 && (h[0] == 'R' || h[0] == 'r') &&
             (h.substr(0, 12) == "Retry-After:" || h.substr(0, 12) == "retry-after:")) {
    std::string v(h.substr(12));
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.pop_back();
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    t->retry_after = v;
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  t->got_bytes = true;
  if (!t->status) curl_easy_getinfo(t->handle, CURLINFO_RESPONSE_CODE, &t->status);
  std::string_view chunk(data, size * n);
  if (!t->stream || t->status / 100 != 2) {
    if (t->body.size() + chunk.size() > (16u << 20)) return 0;  // a runaway body
    t->body.append(chunk);
    return size * n;
  }
  t->pending.append(chunk);
  size_t at;
  while ((at = t->pending.find('\n')) != std::string::npos) {
    std::string line = t->pending.substr(0, at);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    t->pending.erase(0, at + 1);
    t->Line(line);
    if (!t->stream_error.empty()) return 0;
  }
  return size * n;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (*t->cancelled && (*t->cancelled)()) return 1;
  if (!t->got_bytes && Clock::now() - t->start > t->first_byte_timeout) {
    t->first_byte_timed_out = true;
    return 1;
  }
  return 0;
}

bool Retryable(long status) { return status == 429 || status == 408 || status >= 500; }

std::string ErrorMessage(const Transfer& t) {
  json j = json::parse(t.body, nullptr, false);
  if (!j.is_discarded() && j.contains("error") && j["error"].is_object())
    return j["error"].value("message", "");
  return t.body.substr(0, 200);
}

}  // namespace

CloudClient::CloudClient(CloudConfig config, std::string api_key)
    : config_(std::move(config)),
      api_key_(std::move(api_key)),
      breaker_(
          config_.breaker_failures,
          std::chrono::milliseconds(static_cast<int64_t>(config_.breaker_cooldown_secs * 1000))) {
  EnsureCurlInitialised();
}

json CloudClient::Complete(json request, const std::function<void(const json&)>& on_event,
                           const std::function<bool()>& cancelled) {
  request["model"] = config_.model;
  const bool stream = request.value("stream", false);
  if (stream) request["stream_options"] = {{"include_usage", true}};  // for the budget
  const std::string body = request.dump(-1, ' ', false, json::error_handler_t::replace);
  std::string url = config_.url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  url += "/chat/completions";

  if (!breaker_.Allow())
    throw CloudError(ErrorCode::kUnavailable, "the cloud circuit is open (recent failures)", 0,
                     false);
  std::string last_error;
  int last_status = 0;
  for (int attempt = 0; attempt <= config_.retries; ++attempt) {
    Transfer t;
    t.on_event = &on_event;
    t.cancelled = &cancelled;
    t.stream = stream;
    t.first_byte_timeout = std::chrono::milliseconds(config_.first_byte_timeout_ms);
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers,
                                stream ? "Accept: text/event-stream" : "Accept: application/json");
    std::string auth;
    if (!api_key_.empty()) {
      auth = "Authorization: Bearer " + api_key_;
      headers = curl_slist_append(headers, auth.c_str());
    }
    std::vector<std::string> extra;
    for (const auto& [k, v] : config_.headers) extra.push_back(k + ": " + v);
    for (const auto& h : extra) headers = curl_slist_append(headers, h.c_str());
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config_.connect_timeout_ms));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(config_.timeout_ms));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);  // a redirect could carry the key away
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    t.handle = c;
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(headers);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    t.status = status;

    if (cancelled && cancelled()) {
      throw CloudError(ErrorCode::kUnavailable, "cancelled", static_cast<int>(status), t.forwarded);
    }
    if (rc == CURLE_OK && status / 100 == 2 && t.stream_error.empty()) {
      if (!stream) {
        json j = json::parse(t.body, nullptr, false);
        if (j.is_discarded() || !j.contains("choices")) {
          last_error = "the cloud's answer is not a chat completion";
        } else {
          breaker_.Success();
          return j;
        }
      } else if (t.done || t.finished) {
        breaker_.Success();
        return nullptr;
      } else {
        last_error = t.forwarded ? "the cloud's stream broke off before the answer was complete"
                                 : "the cloud's stream ended without any event";
      }
    } else if (!t.stream_error.empty()) {
      last_error = t.stream_error;
    } else if (rc != CURLE_OK) {
      last_error = t.first_byte_timed_out
                       ? "no answer from the cloud within " +
                             std::to_string(config_.first_byte_timeout_ms) + " ms"
                       : std::string("cloud request failed: ") + curl_easy_strerror(rc);
    } else {
      last_error = "the cloud answered " + std::to_string(status) + ": " + ErrorMessage(t);
    }
    last_status = static_cast<int>(status);
    if (t.forwarded) {
      breaker_.Failure();
      throw CloudError(ErrorCode::kUnavailable, last_error, last_status, true);
    }
    const bool retry =
        rc != CURLE_OK || Retryable(status) || !t.stream_error.empty() || status / 100 == 2;
    if (!retry) {
      // The cloud refused this request (400, 401, 404...): not the link's fault.
      breaker_.Success();
      throw CloudError(status == 401 || status == 403 ? ErrorCode::kPermissionDenied
                                                      : ErrorCode::kInvalidArgument,
                       last_error, last_status, false);
    }
    if (attempt == config_.retries) break;
    auto wait = std::chrono::milliseconds(
        std::min<int64_t>(4000, static_cast<int64_t>(config_.backoff_ms) << attempt));
    if (!t.retry_after.empty() && std::isdigit(static_cast<unsigned char>(t.retry_after[0])))
      wait = std::chrono::milliseconds(std::min<int64_t>(10000, std::stoll(t.retry_after) * 1000));
    Log(LogSeverity::kWarn, "router", "cloud_retry",
        fmt::format("cloud: {} (attempt {} of {}); retrying in {} ms", last_error, attempt + 1,
                    config_.retries + 1, wait.count()),
        {{"attempt", attempt + 1}, {"wait_ms", wait.count()}});
    for (auto until = Clock::now() + wait; Clock::now() < until;) {
      if (cancelled && cancelled())
        throw CloudError(ErrorCode::kUnavailable, "cancelled", last_status, false);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  breaker_.Failure();
  throw CloudError(ErrorCode::kUnavailable, last_error, last_status, false);
}

}  // namespace outpost
