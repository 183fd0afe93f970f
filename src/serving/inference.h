// A protocol-neutral inference request and response: both front ends decode into these.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace outpost {

struct RequestedOutput {
  std::string name;
  bool binary = false;  // HTTP binary tensor extension: send this output as raw bytes
};

struct InferRequest {
  std::string model_name;
  std::string model_version;  // empty: the latest ready version
  std::string id;
  std::vector<Tensor> inputs;
  std::vector<RequestedOutput> outputs;  // empty: every output
  bool binary_outputs = false;           // default for outputs not listed
  std::optional<std::chrono::microseconds> timeout;
};

struct InferResponse {
  std::string model_name;
  std::string model_version;
  std::string id;
  std::vector<Tensor> outputs;
};

}  // namespace outpost
