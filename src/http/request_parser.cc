#include "http/request_parser.h"

#include <charconv>

namespace outpost::http {
namespace {

constexpr size_t kMaxChunkLine = 4096;
constexpr size_t kMaxTrailerBytes = 8192;

bool IsTokenChar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!IsTokenChar(c)) return false;
  return true;
}

// A field value: visible ASCII, space, tab and obs-text; no other control characters.
bool IsFieldValue(std::string_view s) {
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  return true;
}

// A request-target: visible ASCII only (anything else must be percent-encoded).
bool IsTargetChars(std::string_view s) {
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f) return false;
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool Fail(ParseError& error, int status, std::string message) {
  error.status = status;
  error.message = std::move(message);
  return false;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "a, b,c" contains `token` as one of its comma-separated elements (case-insensitive).
bool ListHas(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    if (EqualsIgnoreCase(Trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

bool ParseTarget(std::string_view target, Request& r, ParseError& error) {
  if (target.empty() || !IsTargetChars(target))
    return Fail(error, 400, "the request target has characters that must be percent-encoded");
  std::string_view path = target;
  if (target.front() != '/') {
    // absolute-form (a proxy's request): keep only what follows the authority.
    size_t scheme = target.find("://");
    if (scheme == std::string_view::npos) return Fail(error, 400, "malformed request target");
    size_t slash = target.find('/', scheme + 3);
    path = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  r.target = std::string(path);
  std::string_view query;
  if (size_t q = path.find('?'); q != std::string_view::npos) {
    query = path.substr(q + 1);
    path = path.substr(0, q);
  }
  if (size_t hash = query.find('#'); hash != std::string_view::npos) query = query.substr(0, hash);
  if (!PercentDecode(path, false, r.path))
    return Fail(error, 400, "the request path has a malformed percent-escape");
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      std::string key, value;
      if (!PercentDecode(pair.substr(0, eq), true, key) ||
          (eq != std::string_view::npos && !PercentDecode(pair.substr(eq + 1), true, value)))
        return Fail(error, 400, "the query string has a malformed percent-escape");
      r.query.emplace(std::move(key), std::move(value));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return true;
}

}  // namespace

bool PercentDecode(std::string_view in, bool plus_is_space, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      c = static_cast<char>(hi * 16 + lo);
      if (c == '\0') return false;
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    out += c;
  }
  return true;
}

size_t FindHeadEnd(std::string_view buffer, size_t& scanned) {
  // Resume a little before where the last call stopped: the terminator may straddle reads.
  size_t from = scanned >= 3 ? scanned - 3 : 0;
  size_t at = buffer.find("\r\n\r\n", from);
  if (at == std::string_view::npos) {
    scanned = buffer.size();
    return std::string_view::npos;
  }
  return at + 4;
}

bool ParseHead(std::string_view head, const HeadLimits& limits, RequestHead& out,
               ParseError& error) {
  if (head.size() > limits.max_head_bytes)
    return Fail(
        error, 431,
        "the request head is larger than " + std::to_string(limits.max_head_bytes) + " bytes");
  // RFC 9112 2.2: a server SHOULD ignore empty lines received before the request line.
  while (head.size() >= 2 && head.substr(0, 2) == "\r\n") head.remove_prefix(2);
  size_t eol = head.find("\r\n");
  if (eol == std::string_view::npos) return Fail(error, 400, "the request head is incomplete");
  std::string_view line = head.substr(0, eol);
  if (line.size() > limits.max_request_line)
    return Fail(
        error, 414,
        "the request line is longer than " + std::to_string(limits.max_request_line) + " bytes");
  if (line.find('\n') != std::string_view::npos || line.find('\r') != std::string_view::npos)
    return Fail(error, 400, "bare CR or LF in the request line");
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return Fail(error, 400, "malformed request line");
  Request& r = out.request;
  std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                   version = line.substr(sp2 + 1);
  if (!IsToken(method)) return Fail(error, 400, "malformed method");
  if (version == "HTTP/1.1") {
    r.version_minor = 1;
  } else if (version == "HTTP/1.0") {
    r.version_minor = 0;
  } else if (version.substr(0, 5) == "HTTP/") {
    return Fail(error, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
  } else {
    return Fail(error, 400, "malformed request line");
  }
  r.method = std::string(method);
  if (!ParseTarget(target, r, error)) return false;

  std::string_view rest = head.substr(eol + 2);
  while (true) {
    eol = rest.find("\r\n");
    if (eol == std::string_view::npos) return Fail(error, 400, "the request head is incomplete");
    line = rest.substr(0, eol);
    rest.remove_prefix(eol + 2);
    if (line.empty()) break;
    if (line.front() == ' ' || line.front() == '\t')
      return Fail(error, 400, "obsolete line folding in a header");
    if (r.headers.fields().size() >= limits.max_headers)
      return Fail(error, 431, "more than " + std::to_string(limits.max_headers) + " headers");
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return Fail(error, 400, "a header line has no colon");
    std::string_view name = line.substr(0, colon), value = Trim(line.substr(colon + 1));
    if (!IsToken(name)) return Fail(error, 400, "malformed header name");
    if (!IsFieldValue(value))
      return Fail(error, 400, "a control character in header '" + std::string(name) + "'");
    r.headers.Add(std::string(name), std::string(value));
  }
  if (!rest.empty()) return Fail(error, 400, "data after the end of the head");

  // Framing (RFC 9112 6): chunked wins nothing here; both at once is a smuggling attempt.
  const bool has_te = r.headers.Has("Transfer-Encoding");
  const bool has_cl = r.headers.Has("Content-Length");
  if (has_te && has_cl)
    return Fail(error, 400, "both Transfer-Encoding and Content-Length are set");
  if (has_te) {
    if (r.headers.Count("Transfer-Encoding") != 1 ||
        !EqualsIgnoreCase(Trim(r.headers.Get("Transfer-Encoding")), "chunked"))
      return Fail(error, 501, "only Transfer-Encoding: chunked is supported");
    if (r.version_minor == 0) return Fail(error, 400, "chunked coding needs HTTP/1.1");
    out.body = RequestHead::Body::kChunked;
  } else if (has_cl) {
    std::string_view value;
    for (const auto& [k, v] : r.headers.fields()) {
      if (!EqualsIgnoreCase(k, "Content-Length")) continue;
      if (!value.empty() && value != v)
        return Fail(error, 400, "conflicting Content-Length headers");
      value = v;
    }
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (value.empty() || ec != std::errc() || end != value.data() + value.size() ||
        value.front() == '+' || value.front() == '-')
      return Fail(error, 400, "Content-Length is not a number");
    out.content_length = n;
    out.body = n > 0 ? RequestHead::Body::kLength : RequestHead::Body::kNone;
  }
  const std::string& connection = r.headers.Get("Connection");
  out.keep_alive =
      r.version_minor == 1 ? !ListHas(connection, "close") : ListHas(connection, "keep-alive");
  if (r.headers.Has("Expect")) {
    if (!EqualsIgnoreCase(Trim(r.headers.Get("Expect")), "100-continue"))
      return Fail(error, 417, "only Expect: 100-continue is supported");
    out.expect_continue = r.version_minor == 1 && out.body != RequestHead::Body::kNone;
  }
  return true;
}

ChunkedDecoder::Result ChunkedDecoder::Feed(std::string_view in, size_t& consumed, std::string& out,
                                            uint64_t max_body, ParseError& error) {
  auto fail = [&](int status, std::string message) {
    Fail(error, status, std::move(message));
    return Result::kError;
  };
  size_t at = 0;
  // Reads a CRLF-terminated line into line_; false when the input ran out first.
  auto read_line = [&](size_t max, bool& too_long) {
    too_long = false;
    while (at < in.size()) {
      char c = in[at++];
      line_ += c;
      if (line_.size() >= 2 && line_[line_.size() - 2] == '\r' && c == '\n') {
        line_.resize(line_.size() - 2);
        return true;
      }
      if (line_.size() > max) {
        too_long = true;
        return false;
      }
    }
    return false;
  };
  while (at < in.size() && state_ != State::kDone) {
    bool too_long = false;
    switch (state_) {
      case State::kSize: {
        if (!read_line(kMaxChunkLine, too_long)) {
          if (too_long) return fail(400, "a chunk-size line is too long");
          break;
        }
        std::string_view size = line_;
        size = size.substr(0, size.find(';'));  // chunk extensions are ignored
        size = Trim(size);
        uint64_t n = 0;
        auto [end, ec] = std::from_chars(size.data(), size.data() + size.size(), n, 16);
        if (size.empty() || ec != std::errc() || end != size.data() + size.size())
          return fail(400, "malformed chunk size");
        line_.clear();
        if (n == 0) {
          state_ = State::kTrailer;
        } else {
          if (n > max_body || out.size() > max_body - n)
            return fail(413,
                        "the request body is larger than " + std::to_string(max_body) + " bytes");
          remaining_ = n;
          state_ = State::kData;
        }
        break;
      }
      case State::kData: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size() - at));
        out.append(in.substr(at, take));
        at += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::kDataEnd;
        break;
      }
      case State::kDataEnd: {
        if (!read_line(2, too_long)) {
          if (too_long) return fail(400, "chunk data is not followed by CRLF");
          break;
        }
        if (!line_.empty()) return fail(400, "chunk data is not followed by CRLF");
        state_ = State::kSize;
        break;
      }
      case State::kTrailer: {
        const size_t start = at;
        bool complete = read_line(kMaxTrailerBytes, too_long);
        trailer_bytes_ += at - start;
        if (too_long || trailer_bytes_ > kMaxTrailerBytes) return fail(431, "trailers too large");
        if (!complete) break;
        if (line_.empty()) state_ = State::kDone;  // trailer fields are read and dropped
        line_.clear();
        break;
      }
      case State::kDone:
        break;
    }
  }
  consumed += at;
  return state_ == State::kDone ? Result::kDone : Result::kNeedMore;
}

}  // namespace outpost::http
