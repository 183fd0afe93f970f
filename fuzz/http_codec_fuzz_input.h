// The KServe v2 HTTP body decoder (JSON tensors and the binary tensor extension) and the
// response encoder fed with what it decoded. The first half of the input's length doubles as
// an Inference-Header-Content-Length. Every refusal is Error(kInvalidArgument); a body accepted
// is never nested deeper than the decoder's limit (64). Shared by fuzz/http_codec_fuzz.cc and
// the corpus replay unit test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "core/error.h"
#include "json_nesting.h"
#include "serving/http_codec.h"

namespace outpost_fuzz {

inline void RunHttpCodecInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  for (std::optional<size_t> hl : {std::optional<size_t>{}, std::optional<size_t>{size / 2}}) {
    try {
      auto req = outpost::DecodeHttpInferRequest(body, hl);
      CheckAcceptedNesting(hl ? body.substr(0, *hl) : body, 64);
      outpost::InferResponse res{"m", "1", req.id, req.inputs};
      outpost::EncodeHttpInferResponse(res, req);
    } catch (const outpost::Error& e) {
      if (e.code() != outpost::ErrorCode::kInvalidArgument) __builtin_trap();
    }
  }
}

}  // namespace outpost_fuzz
