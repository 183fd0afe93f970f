// HTTP/1.1 request framing (RFC 9112), strict where leniency lets requests be smuggled or
// memory be taken: the head must fit its byte and field-count limits, obsolete line folding
// and whitespace before a colon are refused, a body is framed by exactly one Content-Length
// or by chunked coding (never both), and chunk sizes cannot overflow. Untrusted input: it has
// a fuzz target (fuzz/http_request_fuzz.cc).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "http/message.h"

namespace outpost::http {

struct HeadLimits {
  size_t max_request_line = 8u << 10;
  size_t max_head_bytes = 32u << 10;  // request line and every header line
  size_t max_headers = 100;
};

// Why a request is refused: the status to answer and a message for the client.
struct ParseError {
  int status = 400;
  std::string message;
};

struct RequestHead {
  Request request;
  enum class Body { kNone, kLength, kChunked } body = Body::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;
  bool expect_continue = false;
};

// Where the head ends in `buffer` (the offset just past the empty line), or npos when more is
// needed. `scanned` carries the progress of earlier calls on the same buffer.
size_t FindHeadEnd(std::string_view buffer, size_t& scanned);

// Parses a complete head (as found by FindHeadEnd). Returns false and fills `error` when the
// request must be refused.
bool ParseHead(std::string_view head, const HeadLimits& limits, RequestHead& out,
               ParseError& error);

// Decodes a chunked body as it arrives.
class ChunkedDecoder {
 public:
  enum class Result { kNeedMore, kDone, kError };
  // Consumes what it can of `in` (adds to `consumed`), appending data to `out`. Refuses a body
  // that would grow past `max_body` (413) and malformed framing (400).
  Result Feed(std::string_view in, size_t& consumed, std::string& out, uint64_t max_body,
              ParseError& error);

 private:
  enum class State { kSize, kData, kDataEnd, kTrailer, kDone } state_ = State::kSize;
  std::string line_;
  uint64_t remaining_ = 0;
  size_t trailer_bytes_ = 0;
};

// Percent-decoding; `plus_is_space` for query strings. False for a malformed escape or a NUL.
bool PercentDecode(std::string_view in, bool plus_is_space, std::string& out);

}  // namespace outpost::http
