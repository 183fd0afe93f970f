// A protocol-neutral inference request and response: both front ends decode into these.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "runtime/tensor.h"
#include "serving/shared_memory.h"

namespace outpost {

struct RequestedOutput {
  std::string name;
  bool binary = false;  // HTTP binary tensor extension: send this output as raw bytes
  std::optional<SharedMemoryRef> shared_memory;  // written there instead of sent
};

struct InferRequest {
  std::string model_name;
  std::string model_version;  // empty: the latest ready version
  std::string id;
  std::vector<Tensor> inputs;
  // Per input (empty: none): read from shared memory, its `data` empty until then.
  std::vector<std::optional<SharedMemoryRef>> input_regions;
  SharedMemoryCaller caller;             // whose regions the request may use
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
