// The one HTTP client of the agent and its tools (libcurl underneath): the TUF fetcher, the
// cloud LLM, the OTLP shipper, webhooks, the fleet client and the supervisor's health probe all
// go through Perform(), so every request gets the same defaults — http and https only, no
// redirects unless asked, certificate checks on, a connection timeout, a whole-request timeout,
// a bound on what the server may send — and each caller states only what differs.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace outpost::net {

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // sent when not empty (or when method is POST/PUT)
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds timeout{30000};  // the whole exchange; 0: none (a long download)
  // Slow retrieval: fewer than this many bytes a second for `slow_window` ends the transfer.
  long min_bytes_per_second = 0;
  std::chrono::seconds slow_window{0};
  // No body byte within this time ends the transfer (0: only `timeout` applies): a server that
  // accepts a request and then says nothing (headers alone do not count: a stream's first
  // event is what the caller waits for).
  std::chrono::milliseconds first_byte_timeout{0};
  uint64_t max_response_bytes = 16u << 20;  // more than this: over_limit (endless data)
  uint64_t resume_from = 0;                 // a Range request from this offset
  bool follow_redirects = false;            // a redirect can carry credentials to another host
  std::string ca_file;                      // empty: the system's roots
  // Streaming: each body chunk as it arrives (then `body` is not kept); false aborts.
  std::function<bool(std::string_view)> on_body;
  // Each header line of the final response ("Name: value", no line break).
  std::function<void(std::string_view)> on_header;
  // Polled while the transfer runs: true cancels it.
  std::function<bool()> cancelled;
};

struct HttpResponse {
  long status = 0;             // 0: no HTTP answer (see error)
  std::string body;            // unless streamed
  std::string error;           // transport failure, empty when the exchange completed
  uint64_t received = 0;       // body bytes, streamed or kept
  bool over_limit = false;     // the server sent more than max_response_bytes
  bool timed_out = false;      // connection, whole-request, first-byte or slow-retrieval limit
  bool no_first_byte = false;  // first_byte_timeout passed without an answer
  bool cancelled = false;
  bool ok() const { return error.empty() && status / 100 == 2; }
};

HttpResponse Perform(const HttpRequest& request);

// Waits before retry `attempt` (1, 2, ...): `first` doubled per attempt, at most `max`, with
// ±20% jitter so that devices that failed together do not retry together.
std::chrono::milliseconds Backoff(int attempt, std::chrono::milliseconds first,
                                  std::chrono::milliseconds max);

}  // namespace outpost::net
