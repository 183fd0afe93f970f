// libFuzzer target for the KServe v2 HTTP body decoder (JSON tensors and the binary tensor
// extension) and the response encoder fed with what it decoded.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "serving/http_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  for (std::optional<size_t> hl : {std::optional<size_t>{}, std::optional<size_t>{size / 2}}) {
    try {
      auto req = outpost::DecodeHttpInferRequest(body, hl);
      outpost::InferResponse res{"m", "1", req.id, req.inputs};
      outpost::EncodeHttpInferResponse(res, req);
    } catch (const outpost::Error& e) {
      if (e.code() != outpost::ErrorCode::kInvalidArgument) __builtin_trap();
    }
  }
  return 0;
}
