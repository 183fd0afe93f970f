// The one way untrusted JSON enters Outpost: HTTP and gRPC bodies, fleet requests, OTLP batches,
// package manifests and signatures, TUF metadata, trust files, anything a mirror or a client
// sent. Limits on size, nesting, element count and string length are checked while the text is
// parsed, so no value that exceeds them is ever built, copied or dumped (nlohmann copies and
// dumps recursively: a document nested 10^5 deep overflows the stack).
//
// A refusal is Error(kInvalidArgument) naming the limit ("<what>: nested deeper than 64
// levels"), or Error(kPayloadTooLarge) when the text itself is over max_bytes.
#pragma once

#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

namespace outpost {

struct JsonLimits {
  size_t max_bytes = 1u << 20;
  int max_depth = 64;              // objects and arrays inside one another
  size_t max_elements = 1u << 16;  // values of any kind, keys not counted
  size_t max_string_bytes = 1u << 20;

  // Small control bodies (log level, tags, tokens): kilobytes, shallow.
  static JsonLimits Control() { return {64u << 10, 16, 4096, 16u << 10}; }
  // Signed documents and manifests read from a package or a repository.
  static JsonLimits Document(size_t max_bytes) {
    return {max_bytes, 64, max_bytes / 8 + 64, max_bytes};
  }
};

// Parses `text` within `limits`; `what` starts every error message ("chat request").
nlohmann::json ParseJson(std::string_view text, const JsonLimits& limits, std::string_view what);

// The nesting depth of a parsed value (0 for a scalar): for tests and fuzz targets that check
// that nothing deeper than the limit got through.
int JsonDepth(const nlohmann::json& value);

}  // namespace outpost
