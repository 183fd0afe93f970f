// KServe v2 REST inference bodies: JSON tensors, and Triton's binary tensor data extension
// (a JSON header of Inference-Header-Content-Length bytes followed by raw tensor bytes).
// These parse untrusted input: they throw Error(kInvalidArgument) with a precise message and
// never read outside the body.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/memory_budget.h"
#include "serving/inference.h"

namespace outpost {

// Which parser reads a JSON body: chosen by size (simdjson indexes bodies up to 1 MiB, larger
// ones stream through nlohmann's parser), or one of them, for the tests and the fuzz target
// that check both decode every body alike.
enum class JsonBodyParser { kBySize, kIndexed, kStreaming };

// `header_length` is the Inference-Header-Content-Length value when the header was sent.
// With `hold`, the tensors' memory (and the index's) is charged to it before it is taken
// (throws Error(kResourceExhausted) when the budget is spent).
InferRequest DecodeHttpInferRequest(std::string_view body, std::optional<size_t> header_length,
                                    BudgetHold* hold = nullptr,
                                    JsonBodyParser parser = JsonBodyParser::kBySize);

struct EncodedHttpResponse {
  std::string body;
  std::optional<size_t> header_length;  // set when binary outputs follow the JSON header
};

EncodedHttpResponse EncodeHttpInferResponse(const InferResponse& response,
                                            const InferRequest& request);

// Parses an Inference-Header-Content-Length value.
std::optional<size_t> ParseHeaderLength(std::string_view value);

}  // namespace outpost
