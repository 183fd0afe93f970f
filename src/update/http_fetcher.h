// Fetching from an update repository over HTTP(S) with libcurl: every transfer is bounded by
// the length signed for it (endless data) and by a minimum rate (slow retrieval), and target
// downloads resume after a dropped connection with Range requests instead of starting over.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "update/updater.h"

namespace outpost::tuf {

struct HttpLimits {
  long connect_timeout_s = 10;
  long min_bytes_per_second = 1024;  // below this for `slow_window_s`: slow retrieval
  long slow_window_s = 10;
  int attempts = 8;  // per download, each resuming where the last stopped
  std::chrono::milliseconds first_backoff{200};  // doubles after each failed attempt, up to 5 s
  uint64_t max_bytes_per_second = 0;             // bandwidth cap for downloads; 0: none
  // Called as download bytes arrive (the running total of the current file).
  std::function<void(uint64_t)> on_progress;
};

class HttpFetcher final : public Fetcher {
 public:
  HttpFetcher(std::string metadata_base_url, HttpLimits limits = {});
  std::optional<std::string> Fetch(const std::string& name, uint64_t max_length) override;

  // Downloads `url` to `dest` (via `dest`.part, kept between attempts and runs), checking the
  // length and every hash that signed targets metadata gave; renames into place when they
  // hold. Throws Error(kPermissionDenied) for more data than `length`, a hash mismatch or an
  // algorithm this client cannot check (the partial file is deleted), Error(kUnavailable) when
  // the attempts run out (the partial file is kept).
  void Download(const std::string& url, const std::filesystem::path& dest, uint64_t length,
                const std::map<std::string, std::string>& hashes);

  uint64_t bytes_received() const { return bytes_received_; }  // over the fetcher's life

 private:
  std::string base_;
  HttpLimits limits_;
  uint64_t bytes_received_ = 0;
};

}  // namespace outpost::tuf
