// The KServe v2 HTTP body decoder (JSON tensors and the binary tensor extension) and the
// response encoder fed with what it decoded. The first half of the input's length doubles as
// an Inference-Header-Content-Length. Every refusal is Error(kInvalidArgument); a body accepted
// is never nested deeper than the decoder's limit (64); and both JSON parsers (simdjson's index,
// nlohmann's stream) accept the same bodies and decode them to the same request. Shared by
// fuzz/http_codec_fuzz.cc and the corpus replay unit test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "core/error.h"
#include "json_nesting.h"
#include "serving/http_codec.h"

namespace outpost_fuzz {

inline std::optional<outpost::InferRequest> DecodeOrRefuse(std::string_view body,
                                                           std::optional<size_t> header_length,
                                                           outpost::JsonBodyParser parser) {
  try {
    return outpost::DecodeHttpInferRequest(body, header_length, nullptr, parser);
  } catch (const outpost::Error& e) {
    if (e.code() != outpost::ErrorCode::kInvalidArgument) __builtin_trap();
    return std::nullopt;
  }
}

inline bool SameRequest(const outpost::InferRequest& a, const outpost::InferRequest& b) {
  if (a.id != b.id || a.binary_outputs != b.binary_outputs || a.timeout != b.timeout ||
      a.inputs.size() != b.inputs.size() || a.outputs.size() != b.outputs.size())
    return false;
  for (size_t i = 0; i < a.inputs.size(); ++i) {
    const auto &x = a.inputs[i], &y = b.inputs[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.data != y.data)
      return false;
  }
  for (size_t i = 0; i < a.outputs.size(); ++i)
    if (a.outputs[i].name != b.outputs[i].name || a.outputs[i].binary != b.outputs[i].binary)
      return false;
  return true;
}

inline void RunHttpCodecInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  for (std::optional<size_t> hl : {std::optional<size_t>{}, std::optional<size_t>{size / 2}}) {
    auto indexed = DecodeOrRefuse(body, hl, outpost::JsonBodyParser::kIndexed);
    auto streamed = DecodeOrRefuse(body, hl, outpost::JsonBodyParser::kStreaming);
    if (indexed.has_value() != streamed.has_value()) __builtin_trap();
    if (!indexed) continue;
    if (!SameRequest(*indexed, *streamed)) __builtin_trap();
    CheckAcceptedNesting(hl ? body.substr(0, *hl) : body, 64);
    outpost::InferResponse res{"m", "1", indexed->id, indexed->inputs};
    outpost::EncodeHttpInferResponse(res, *indexed);
  }
}

}  // namespace outpost_fuzz
