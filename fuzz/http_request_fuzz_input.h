// The HTTP/1.1 request framing every front end reads first (http/request_parser.h): the head as
// the server finds and parses it, then a chunked body decoded whole and a byte at a time (the two
// must agree: a body's meaning cannot depend on how TCP cut it). Shared by
// fuzz/http_request_fuzz.cc and the corpus replay unit test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/request_parser.h"

namespace outpost_fuzz {

struct ChunkedResult {
  outpost::http::ChunkedDecoder::Result result;
  std::string body;
  size_t consumed = 0;
  int status = 0;
};

inline ChunkedResult DecodeChunked(std::string_view in, size_t piece, uint64_t max_body) {
  using outpost::http::ChunkedDecoder;
  ChunkedDecoder decoder;
  ChunkedResult r{ChunkedDecoder::Result::kNeedMore, {}, 0, 0};
  for (size_t at = 0; at < in.size() && r.result == ChunkedDecoder::Result::kNeedMore;
       at += piece) {
    outpost::http::ParseError error;
    size_t used = 0;
    r.result = decoder.Feed(in.substr(at, piece), used, r.body, max_body, error);
    r.consumed += used;
    if (r.result == ChunkedDecoder::Result::kError) r.status = error.status;
    // Wanting more, the decoder took everything it was given.
    if (r.result == ChunkedDecoder::Result::kNeedMore && used != std::min(piece, in.size() - at))
      __builtin_trap();
  }
  return r;
}

inline void RunHttpRequestInput(const uint8_t* data, size_t size) {
  using namespace outpost::http;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  HeadLimits limits;
  limits.max_request_line = 512;
  limits.max_head_bytes = 4096;
  limits.max_headers = 20;
  size_t scanned = 0;
  size_t end = FindHeadEnd(in, scanned);
  const std::string_view head_text = end == std::string_view::npos ? in : in.substr(0, end);
  RequestHead head;
  ParseError error;
  if (!ParseHead(head_text, limits, head, error)) {
    if (error.status < 400 || error.status > 505 || error.message.empty()) __builtin_trap();
    return;
  }
  const Request& r = head.request;
  if (head_text.size() > limits.max_head_bytes || r.headers.fields().size() > limits.max_headers ||
      r.method.empty() || r.target.empty() || r.target[0] != '/' ||
      (r.HasHeader("Transfer-Encoding") && r.HasHeader("Content-Length")) ||
      (head.body == RequestHead::Body::kLength) != (head.content_length > 0))
    __builtin_trap();
  if (head.body != RequestHead::Body::kChunked || end == std::string_view::npos) return;
  constexpr uint64_t kMaxBody = 4096;
  const std::string_view body = in.substr(end);
  const ChunkedResult whole = DecodeChunked(body, body.size() + 1, kMaxBody);
  const ChunkedResult bytewise = DecodeChunked(body, 1, kMaxBody);
  if (whole.body.size() > kMaxBody || whole.result != bytewise.result ||
      whole.status != bytewise.status)
    __builtin_trap();
  if (whole.result == ChunkedDecoder::Result::kDone &&
      (whole.body != bytewise.body || whole.consumed != bytewise.consumed))
    __builtin_trap();
}

}  // namespace outpost_fuzz
