// What a handler sees of an HTTP request, and what it fills in for the response. The server
// (http/server.h) owns the bytes on the wire; nothing here does I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outpost::http {

// Header names compare without case; order and repeats are kept.
class Headers {
 public:
  void Add(std::string name, std::string value);
  void Set(std::string name, std::string value);  // replaces every field of that name
  bool Has(std::string_view name) const;
  // The first value of `name`, or "" when absent.
  const std::string& Get(std::string_view name) const;
  size_t Count(std::string_view name) const;
  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

bool EqualsIgnoreCase(std::string_view a, std::string_view b);

struct Request {
  std::string method;  // as sent: GET, POST, ...
  std::string target;  // the request-target as sent (path and query): what a device signs
  std::string path;    // percent-decoded, without the query
  std::multimap<std::string, std::string> query;   // percent-decoded
  std::map<std::string, std::string> path_params;  // {name} segments of the route's pattern
  Headers headers;
  std::string body;
  std::string remote_addr;
  bool local_socket = false;  // came over a Unix socket, from the peer below
  uint32_t peer_uid = 0, peer_gid = 0;
  std::string tls_subject;  // a verified client certificate's subject (RFC 2253), or ""
  int version_minor = 1;    // HTTP/1.x
  // Set by the server's admission check: who is calling, and what they may do.
  std::string caller;
  uint32_t granted = 0;

  const std::string& Header(std::string_view name) const { return headers.Get(name); }
  bool HasHeader(std::string_view name) const { return headers.Has(name); }
  bool HasQuery(const std::string& name) const { return query.count(name) > 0; }
  std::string Query(const std::string& name) const;  // first value, or ""
  const std::string& PathParam(const std::string& name) const;
};

// A response body produced while it is sent (chunked): the producer runs on a worker and
// writes through this. Write() blocks while the client is behind (bounded buffering) and
// returns false once the client is gone or stopped reading: the producer should stop then.
class StreamWriter {
 public:
  virtual ~StreamWriter() = default;
  virtual bool Write(std::string_view data) = 0;
  virtual bool Open() const = 0;
};

// A range of a file sent from disk (never read into memory); owns and closes `fd`.
struct FileBody {
  FileBody(int fd_, uint64_t offset_, uint64_t length_)
      : fd(fd_), offset(offset_), length(length_) {}
  ~FileBody();
  FileBody(const FileBody&) = delete;
  FileBody& operator=(const FileBody&) = delete;
  int fd = -1;
  uint64_t offset = 0;
  uint64_t length = 0;
};

struct Response {
  int status = 200;
  Headers headers;
  std::string body;
  std::function<void(StreamWriter&)> stream;  // set: a chunked body, produced after the head
  std::shared_ptr<FileBody> file;             // set: the body is this range of a file

  void Set(std::string content, std::string content_type) {
    body = std::move(content);
    headers.Set("Content-Type", std::move(content_type));
  }
  void SetHeader(std::string name, std::string value) {
    headers.Set(std::move(name), std::move(value));
  }
  void Stream(std::string content_type, std::function<void(StreamWriter&)> producer) {
    headers.Set("Content-Type", std::move(content_type));
    stream = std::move(producer);
  }
};

std::string_view StatusText(int status);

}  // namespace outpost::http
