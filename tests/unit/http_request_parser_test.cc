// http/request_parser: request framing, strict where leniency lets requests be smuggled.
#include "http/request_parser.h"

#include <gtest/gtest.h>

#include <string>

namespace outpost::http {
namespace {

struct Parsed {
  bool ok = false;
  RequestHead head;
  ParseError error;
};

Parsed Parse(const std::string& text, HeadLimits limits = {}) {
  Parsed p;
  p.ok = ParseHead(text, limits, p.head, p.error);
  return p;
}

TEST(RequestParser, ReadsTheRequestLineHeadersAndQuery) {
  auto p = Parse(
      "POST /v2/models/a%20b/infer?x=1&y=%41+b&flag HTTP/1.1\r\nHost: h\r\nX-A:  v \r\n"
      "Content-Length: 12\r\n\r\n");
  ASSERT_TRUE(p.ok) << p.error.message;
  const Request& r = p.head.request;
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/v2/models/a b/infer");
  EXPECT_EQ(r.target, "/v2/models/a%20b/infer?x=1&y=%41+b&flag");
  EXPECT_EQ(r.Query("y"), "A b");
  EXPECT_TRUE(r.HasQuery("flag"));
  EXPECT_EQ(r.Header("x-a"), "v");
  EXPECT_EQ(p.head.body, RequestHead::Body::kLength);
  EXPECT_EQ(p.head.content_length, 12u);
  EXPECT_TRUE(p.head.keep_alive);
}

TEST(RequestParser, KeepAliveFollowsTheVersionAndConnection) {
  EXPECT_FALSE(Parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").head.keep_alive);
  EXPECT_FALSE(Parse("GET / HTTP/1.0\r\n\r\n").head.keep_alive);
  EXPECT_TRUE(Parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").head.keep_alive);
  EXPECT_EQ(Parse("GET http://example/abs?q=1 HTTP/1.1\r\n\r\n").head.request.path, "/abs");
}

TEST(RequestParser, RefusesWhatCouldSmuggleOrOverflow) {
  struct Case {
    std::string head;
    int status;
    std::string says;
  };
  const Case cases[] = {
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400, "both"},
      {"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400, "conflicting"},
      {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "not a number"},
      {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400, "not a number"},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "chunked"},
      {"GET / HTTP/1.1\r\n folded: value\r\n\r\n", 400, "folding"},
      {"GET / HTTP/1.1\r\nName : v\r\n\r\n", 400, "header name"},
      {"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400, "control character"},
      {"GET /a b HTTP/1.1\r\n\r\n", 400, "request line"},
      {"GET /\x80 HTTP/1.1\r\n\r\n", 400, "percent-encoded"},
      {"GET /%zz HTTP/1.1\r\n\r\n", 400, "percent-escape"},
      {"GET /%00 HTTP/1.1\r\n\r\n", 400, "percent-escape"},
      {"GET / HTTP/2.0\r\n\r\n", 505, "HTTP/1"},
      {"GET / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 417, "100-continue"},
  };
  for (const auto& c : cases) {
    auto p = Parse(c.head);
    EXPECT_FALSE(p.ok) << c.head;
    EXPECT_EQ(p.error.status, c.status) << c.head;
    EXPECT_NE(p.error.message.find(c.says), std::string::npos) << c.head << ": " << p.error.message;
  }
}

TEST(RequestParser, HeadLimitsAreStatusesOfTheirOwn) {
  HeadLimits l;
  l.max_request_line = 64;
  l.max_head_bytes = 256;
  l.max_headers = 3;
  EXPECT_EQ(Parse("GET /" + std::string(100, 'a') + " HTTP/1.1\r\n\r\n", l).error.status, 414);
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 4; ++i) many += "X" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(Parse(many + "\r\n", l).error.status, 431);
  EXPECT_EQ(Parse("GET / HTTP/1.1\r\nX: " + std::string(300, 'v') + "\r\n\r\n", l).error.status,
            431);
}

TEST(RequestParser, FindsTheHeadEndAcrossReads) {
  std::string buffer = "GET / HTTP/1.1\r\nA: b\r\n\r";
  size_t scanned = 0;
  EXPECT_EQ(FindHeadEnd(buffer, scanned), std::string::npos);
  buffer += "\nBODY";
  EXPECT_EQ(FindHeadEnd(buffer, scanned), buffer.size() - 4);
}

std::string Decode(const std::string& in, size_t piece, ChunkedDecoder::Result* result,
                   uint64_t max = 1 << 20, int* status = nullptr) {
  ChunkedDecoder d;
  std::string out;
  *result = ChunkedDecoder::Result::kNeedMore;
  for (size_t at = 0; at < in.size() && *result == ChunkedDecoder::Result::kNeedMore; at += piece) {
    size_t used = 0;
    ParseError e;
    *result = d.Feed(std::string_view(in).substr(at, piece), used, out, max, e);
    if (status) *status = e.status;
  }
  return out;
}

TEST(RequestParser, ChunkedBodiesDecodeHoweverTheyArrive) {
  const std::string body = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
  for (size_t piece : {body.size(), size_t{1}, size_t{3}}) {
    ChunkedDecoder::Result r;
    EXPECT_EQ(Decode(body, piece, &r), "hello world") << piece;
    EXPECT_EQ(r, ChunkedDecoder::Result::kDone);
  }
  ChunkedDecoder::Result r;
  int status = 0;
  Decode("ffffffffffffffffff\r\n", 100, &r, 1 << 20, &status);
  EXPECT_EQ(r, ChunkedDecoder::Result::kError);
  EXPECT_EQ(status, 400);
  Decode("10\r\n", 100, &r, 8, &status);
  EXPECT_EQ(r, ChunkedDecoder::Result::kError);
  EXPECT_EQ(status, 413);
  Decode("3\r\nabcX\r\n", 100, &r, 8, &status);
  EXPECT_EQ(status, 400);
  Decode(std::string(5000, '1'), 100, &r, 8, &status);  // a size line without end
  EXPECT_EQ(status, 400);
}

}  // namespace
}  // namespace outpost::http
