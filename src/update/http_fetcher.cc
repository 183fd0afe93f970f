#include "update/http_fetcher.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "core/curl_global.h"
#include "core/error.h"
#include "update/tuf_hashes.h"

namespace outpost::tuf {
namespace {

struct Transfer {
  uint64_t limit = 0;  // bytes this transfer may deliver
  uint64_t received = 0;
  bool over_limit = false;
  std::string* memory = nullptr;
  int fd = -1;
  const std::function<void(uint64_t)>* on_progress = nullptr;
  uint64_t offset = 0;  // bytes of the file already there before this transfer
  // Bandwidth cap, enforced here: libcurl 7.88's own limit lets short transfers burst.
  uint64_t max_rate = 0;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

size_t OnData(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = size * n;
  if (t->received + bytes > t->limit) {
    t->over_limit = true;
    return 0;  // aborts the transfer: more than was signed for
  }
  if (t->memory) t->memory->append(data, bytes);
  for (size_t done = 0; t->fd >= 0 && done < bytes;) {
    ssize_t w = ::write(t->fd, data + done, bytes - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return 0;
    done += static_cast<size_t>(w);
  }
  t->received += bytes;
  if (t->max_rate > 0) {
    // Not reading holds the sender back through TCP flow control.
    auto due = t->started + std::chrono::microseconds(t->received * 1000000 / t->max_rate);
    std::this_thread::sleep_until(due);
  }
  if (t->on_progress && *t->on_progress) (*t->on_progress)(t->offset + t->received);
  return bytes;
}

struct Easy {
  CURL* h = curl_easy_init();
  ~Easy() { curl_easy_cleanup(h); }
};

// Runs one GET; returns the curl code and fills `status`.
CURLcode Get(const std::string& url, Transfer& t, const HttpLimits& limits, uint64_t resume_from,
             long& status) {
  EnsureCurlInitialised();
  Easy e;
  curl_easy_setopt(e.h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e.h, CURLOPT_WRITEFUNCTION, OnData);
  curl_easy_setopt(e.h, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(e.h, CURLOPT_CONNECTTIMEOUT, limits.connect_timeout_s);
  curl_easy_setopt(e.h, CURLOPT_LOW_SPEED_LIMIT, limits.min_bytes_per_second);
  curl_easy_setopt(e.h, CURLOPT_LOW_SPEED_TIME, limits.slow_window_s);
  curl_easy_setopt(e.h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e.h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e.h, CURLOPT_FOLLOWLOCATION, 0L);
  if (resume_from > 0)
    curl_easy_setopt(e.h, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(resume_from));
  CURLcode rc = curl_easy_perform(e.h);
  status = 0;
  curl_easy_getinfo(e.h, CURLINFO_RESPONSE_CODE, &status);
  return rc;
}

}  // namespace

HttpFetcher::HttpFetcher(std::string metadata_base_url, HttpLimits limits)
    : base_(std::move(metadata_base_url)), limits_(limits) {
  while (!base_.empty() && base_.back() == '/') base_.pop_back();
}

std::optional<std::string> HttpFetcher::Fetch(const std::string& name, uint64_t max_length) {
  std::string body;
  Transfer t{max_length, 0, false, &body, -1, nullptr, 0, 0};
  long status = 0;
  CURLcode rc = Get(base_ + "/" + name, t, limits_, 0, status);
  bytes_received_ += t.received;
  if (t.over_limit)
    Fail(ErrorCode::kPermissionDenied, "tuf: " + name + " is longer than " +
                                           std::to_string(max_length) + " bytes (endless data)");
  if (rc == CURLE_OPERATION_TIMEDOUT)
    Fail(ErrorCode::kUnavailable, "tuf: " + name + ": transfer too slow (slow retrieval)");
  if (rc != CURLE_OK && status == 0)
    Fail(ErrorCode::kUnavailable, "tuf: " + name + ": " + curl_easy_strerror(rc));
  if (status == 404 || status == 403) return std::nullopt;
  if (status != 200 || rc != CURLE_OK) {
    Fail(ErrorCode::kUnavailable,
         "tuf: " + name + ": HTTP " + std::to_string(status) + " " + curl_easy_strerror(rc));
  }
  return body;
}

void HttpFetcher::Download(const std::string& url, const std::filesystem::path& dest,
                           uint64_t length, const std::map<std::string, std::string>& hashes) {
  std::filesystem::path part = dest.string() + ".part";
  std::string last_error;
  auto backoff = limits_.first_backoff;
  for (int attempt = 0; attempt < limits_.attempts; ++attempt) {
    if (attempt > 0) {
      std::this_thread::sleep_for(backoff);
      backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(5));
    }
    std::error_code ec;
    uint64_t have = std::filesystem::exists(part, ec) ? std::filesystem::file_size(part, ec) : 0;
    if (have > length) {
      std::filesystem::remove(part, ec);
      have = 0;
    }
    if (have < length) {
      int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd < 0)
        Fail(ErrorCode::kInternal, "cannot write " + part.string() + ": " + std::strerror(errno));
      Transfer t{length - have,
                 0,
                 false,
                 nullptr,
                 fd,
                 &limits_.on_progress,
                 have,
                 limits_.max_bytes_per_second};
      long status = 0;
      CURLcode rc = Get(url, t, limits_, have, status);
      ::fsync(fd);
      ::close(fd);
      bytes_received_ += t.received;
      if (t.over_limit) {
        std::filesystem::remove(part, ec);
        Fail(ErrorCode::kPermissionDenied, "tuf: " + url + " sent more than the " +
                                               std::to_string(length) +
                                               " signed bytes (endless data)");
      }
      if (have > 0 && status == 200) {
        // The server ignored the range and sent the file from the start: what we appended is wrong.
        std::filesystem::remove(part, ec);
        last_error = "server ignored the range request";
        continue;
      }
      if (rc != CURLE_OK || (status != 200 && status != 206)) {
        last_error = rc == CURLE_OPERATION_TIMEDOUT
                         ? "transfer too slow (slow retrieval)"
                         : std::string(curl_easy_strerror(rc)) + ", HTTP " + std::to_string(status);
        continue;  // resume on the next attempt
      }
    }
    if (std::filesystem::file_size(part) != length) {
      last_error = "short transfer";
      continue;
    }
    try {
      CheckFileHashes(part, hashes, url);
    } catch (const Error&) {
      std::filesystem::remove(part, ec);
      throw;
    }
    std::filesystem::rename(part, dest);
    return;
  }
  Fail(ErrorCode::kUnavailable, "tuf: " + url + ": " + std::to_string(limits_.attempts) +
                                    " attempts failed (" + last_error +
                                    "); the partial download is kept for the next try");
}

}  // namespace outpost::tuf
