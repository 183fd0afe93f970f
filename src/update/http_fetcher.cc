#include "update/http_fetcher.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "net/http_client.h"
#include "update/tuf_hashes.h"

namespace outpost::tuf {
namespace {

// Where a transfer's bytes go, and the bandwidth cap, enforced here: libcurl 7.88's own limit
// lets short transfers burst.
struct Sink {
  std::string* memory = nullptr;
  int fd = -1;
  const std::function<void(uint64_t)>* on_progress = nullptr;
  uint64_t offset = 0;  // bytes of the file already there before this transfer
  uint64_t received = 0;
  uint64_t max_rate = 0;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  bool Take(std::string_view data) {
    if (memory) memory->append(data);
    for (size_t done = 0; fd >= 0 && done < data.size();) {
      ssize_t w = ::write(fd, data.data() + done, data.size() - done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return false;
      done += static_cast<size_t>(w);
    }
    received += data.size();
    if (max_rate > 0) {
      // Not reading holds the sender back through TCP flow control.
      auto due = started + std::chrono::microseconds(received * 1000000 / max_rate);
      std::this_thread::sleep_until(due);
    }
    if (on_progress && *on_progress) (*on_progress)(offset + received);
    return true;
  }
};

// One GET of at most `limit` bytes into `sink`.
net::HttpResponse Get(const std::string& url, Sink& sink, const HttpLimits& limits, uint64_t limit,
                      uint64_t resume_from) {
  net::HttpRequest r;
  r.url = url;
  r.connect_timeout = std::chrono::seconds(limits.connect_timeout_s);
  r.timeout = std::chrono::milliseconds(0);  // bounded by size and rate instead
  r.min_bytes_per_second = limits.min_bytes_per_second;
  r.slow_window = std::chrono::seconds(limits.slow_window_s);
  r.max_response_bytes = limit;
  r.resume_from = resume_from;
  r.on_body = [&sink](std::string_view data) { return sink.Take(data); };
  return net::Perform(r);
}

}  // namespace

HttpFetcher::HttpFetcher(std::string metadata_base_url, HttpLimits limits)
    : base_(std::move(metadata_base_url)), limits_(limits) {
  while (!base_.empty() && base_.back() == '/') base_.pop_back();
}

std::optional<std::string> HttpFetcher::Fetch(const std::string& name, uint64_t max_length) {
  std::string body;
  Sink sink;
  sink.memory = &body;
  net::HttpResponse r = Get(base_ + "/" + name, sink, limits_, max_length, 0);
  bytes_received_ += r.received;
  if (r.over_limit)
    Fail(ErrorCode::kPermissionDenied, "tuf: " + name + " is longer than " +
                                           std::to_string(max_length) + " bytes (endless data)");
  if (r.timed_out)
    Fail(ErrorCode::kUnavailable, "tuf: " + name + ": transfer too slow (slow retrieval)");
  if (!r.error.empty() && r.status == 0)
    Fail(ErrorCode::kUnavailable, "tuf: " + name + ": " + r.error);
  if (r.status == 404 || r.status == 403) return std::nullopt;
  if (r.status != 200 || !r.error.empty())
    Fail(ErrorCode::kUnavailable,
         "tuf: " + name + ": HTTP " + std::to_string(r.status) + " " + r.error);
  return body;
}

void HttpFetcher::Download(const std::string& url, const std::filesystem::path& dest,
                           uint64_t length, const std::map<std::string, std::string>& hashes) {
  std::filesystem::path part = dest.string() + ".part";
  std::string last_error;
  for (int attempt = 0; attempt < limits_.attempts; ++attempt) {
    if (attempt > 0)
      std::this_thread::sleep_for(
          net::Backoff(attempt, limits_.first_backoff, std::chrono::seconds(5)));
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
      Sink sink;
      sink.fd = fd;
      sink.on_progress = &limits_.on_progress;
      sink.offset = have;
      sink.max_rate = limits_.max_bytes_per_second;
      net::HttpResponse r = Get(url, sink, limits_, length - have, have);
      ::fsync(fd);
      ::close(fd);
      bytes_received_ += r.received;
      if (r.over_limit) {
        std::filesystem::remove(part, ec);
        Fail(ErrorCode::kPermissionDenied, "tuf: " + url + " sent more than the " +
                                               std::to_string(length) +
                                               " signed bytes (endless data)");
      }
      if (have > 0 && r.status == 200) {
        // The server ignored the range and sent the file from the start: what we appended is wrong.
        std::filesystem::remove(part, ec);
        last_error = "server ignored the range request";
        continue;
      }
      if (!r.error.empty() || (r.status != 200 && r.status != 206)) {
        last_error = r.timed_out ? "transfer too slow (slow retrieval)"
                                 : r.error + ", HTTP " + std::to_string(r.status);
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
