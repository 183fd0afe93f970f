#include "net/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <random>

#include "core/error.h"

namespace outpost::net {
namespace {

using Clock = std::chrono::steady_clock;

struct Transfer {
  const HttpRequest* request;
  HttpResponse* response;
  Clock::time_point start = Clock::now();
  bool first_byte = false;
  bool first_byte_late = false;
};

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  t->first_byte = true;
  if (t->response->received + bytes > t->request->max_response_bytes) {
    t->response->over_limit = true;
    return 0;
  }
  t->response->received += bytes;
  if (t->request->on_body) return t->request->on_body(std::string_view(data, bytes)) ? bytes : 0;
  t->response->body.append(data, bytes);
  return bytes;
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  if (!t->request->on_header) return size * n;
  std::string_view line(data, size * n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (!line.empty()) t->request->on_header(line);
  return size * n;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->request->cancelled && t->request->cancelled()) {
    t->response->cancelled = true;
    return 1;
  }
  if (!t->first_byte && t->request->first_byte_timeout.count() > 0 &&
      Clock::now() - t->start > t->request->first_byte_timeout) {
    t->first_byte_late = true;
    return 1;
  }
  return 0;
}

// libcurl's process-wide initialisation, once, whichever thread comes first (curl_global_init
// itself is neither thread-safe nor free to repeat).
void EnsureCurlInitialised() {
  static const bool ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!ok) Fail(ErrorCode::kInternal, "libcurl failed to initialise");
}

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

HttpResponse Perform(const HttpRequest& request) {
  EnsureCurlInitialised();
  HttpResponse response;
  std::unique_ptr<CURL, CurlFree> curl(curl_easy_init());
  if (!curl) {
    response.error = "cannot start a transfer (out of memory)";
    return response;
  }
  curl_slist* list = nullptr;  // curl_slist_append returns the list's head (or nullptr)
  for (const auto& h : request.headers)
    if (curl_slist* head = curl_slist_append(list, h.c_str())) list = head;
  std::unique_ptr<curl_slist, CurlFree> headers(list);
  Transfer t{&request, &response};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, request.follow_redirects ? 1L : 0L);
  if (request.follow_redirects) curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(request.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
  if (request.min_bytes_per_second > 0) {
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, request.min_bytes_per_second);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(request.slow_window.count()));
  }
  if (!request.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, request.ca_file.c_str());
  if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  }
  if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  if (request.resume_from > 0)
    curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(request.resume_from));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  if (request.cancelled || request.first_byte_timeout.count() > 0) {
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  }
  const CURLcode rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  if (rc != CURLE_OK) {
    response.timed_out = rc == CURLE_OPERATION_TIMEDOUT || t.first_byte_late;
    response.no_first_byte = t.first_byte_late;
    response.error =
        response.over_limit
            ? "the server sent more than " + std::to_string(request.max_response_bytes) + " bytes"
        : t.first_byte_late
            ? "no answer within " + std::to_string(request.first_byte_timeout.count()) + " ms"
        : response.cancelled ? "cancelled"
                             : curl_easy_strerror(rc);
  }
  return response;
}

std::chrono::milliseconds Backoff(int attempt, std::chrono::milliseconds first,
                                  std::chrono::milliseconds max) {
  thread_local std::mt19937 rng(std::random_device{}());
  auto base = first * (int64_t{1} << std::min(attempt - 1, 20));
  base = std::min(base, max);
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  return std::chrono::milliseconds(static_cast<int64_t>(base.count() * jitter(rng)));
}

}  // namespace outpost::net
