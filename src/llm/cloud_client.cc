#include "llm/cloud_client.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "core/logging.h"
#include "net/http_client.h"

namespace outpost {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Transfer {
  const std::function<void(const json&)>* on_event = nullptr;
  bool stream = false;
  long status = 0;
  std::string retry_after;
  std::string body;     // non-streaming, or an error's body
  std::string pending;  // a stream's unfinished line
  bool forwarded = false;
  bool done = false;      // [DONE] seen
  bool finished = false;  // a choice's finish_reason seen
  std::string stream_error;

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

  // The status line of each response (a 100 Continue comes before the real one) and
  // Retry-After.
  void Header(std::string_view h) {
    if (h.rfind("HTTP/", 0) == 0) {
      retry_after.clear();
      size_t space = h.find(' ');
      status = space == std::string_view::npos
                   ? 0
                   : std::atol(std::string(h.substr(space + 1, 3)).c_str());
    } else if (h.size() > 12 &&
               (h.substr(0, 12) == "Retry-After:" || h.substr(0, 12) == "retry-after:")) {
      std::string v(h.substr(12));
      while (!v.empty() && v.back() == ' ') v.pop_back();
      while (!v.empty() && v.front() == ' ') v.erase(0, 1);
      retry_after = v;
    }
  }

  // An answer that is not a 2xx stream is kept whole (bounded by the request); a stream is
  // read line by line. False ends the transfer.
  bool Body(std::string_view chunk) {
    if (!stream || status / 100 != 2) {
      body.append(chunk);
      return true;
    }
    pending.append(chunk);
    size_t at;
    while ((at = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, at);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      pending.erase(0, at + 1);
      Line(line);
      if (!stream_error.empty()) return false;
    }
    return true;
  }
};

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
          std::chrono::milliseconds(static_cast<int64_t>(config_.breaker_cooldown_secs * 1000))) {}

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
    t.stream = stream;
    net::HttpRequest req;
    req.method = "POST";
    req.url = url;
    req.headers = {"Content-Type: application/json",
                   stream ? "Accept: text/event-stream" : "Accept: application/json"};
    if (!api_key_.empty()) req.headers.push_back("Authorization: Bearer " + api_key_);
    for (const auto& [k, v] : config_.headers) req.headers.push_back(k + ": " + v);
    req.body = body;
    req.connect_timeout = std::chrono::milliseconds(config_.connect_timeout_ms);
    req.timeout = std::chrono::milliseconds(config_.timeout_ms);
    req.first_byte_timeout = std::chrono::milliseconds(config_.first_byte_timeout_ms);
    req.max_response_bytes = stream ? 64u << 20 : 16u << 20;  // a runaway answer ends
    req.on_header = [&t](std::string_view h) { t.Header(h); };
    req.on_body = [&t](std::string_view chunk) { return t.Body(chunk); };
    if (cancelled) req.cancelled = cancelled;
    const net::HttpResponse res = net::Perform(req);
    const long status = res.status;
    t.status = status;
    const bool transferred = res.error.empty();

    if (cancelled && cancelled()) {
      throw CloudError(ErrorCode::kUnavailable, "cancelled", static_cast<int>(status), t.forwarded);
    }
    if (transferred && status / 100 == 2 && t.stream_error.empty()) {
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
    } else if (!transferred) {
      last_error = res.no_first_byte ? "no answer from the cloud within " +
                                           std::to_string(config_.first_byte_timeout_ms) + " ms"
                                     : "cloud request failed: " + res.error;
    } else {
      last_error = "the cloud answered " + std::to_string(status) + ": " + ErrorMessage(t);
    }
    last_status = static_cast<int>(status);
    if (t.forwarded) {
      breaker_.Failure();
      throw CloudError(ErrorCode::kUnavailable, last_error, last_status, true);
    }
    const bool retry =
        !transferred || Retryable(status) || !t.stream_error.empty() || status / 100 == 2;
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
