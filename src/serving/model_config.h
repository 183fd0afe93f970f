// What the agent knows about one model version: the schema read from the model itself, with a
// manifest.json beside it adding to or overriding that.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/model.h"
#include "runtime/tensor.h"

namespace outpost {

struct ModelConfig {
  std::string name;
  std::string version;
  std::string platform = "onnxruntime_onnx";
  Placement placement;  // the execution provider it runs on, and those passed over
  std::string description;
  std::filesystem::path model_path;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  // > 0: dimension 0 of every input and output is the batch; requests carry up to this many rows.
  int max_batch_size = 0;
  bool dynamic_batching = false;
  std::chrono::microseconds max_queue_delay{500};
  // Executions of the model at once; 0 (the manifest gave none): chosen at load from the cores.
  int instance_count = 0;
  size_t max_queue_size = 64;
  std::chrono::milliseconds timeout{0};  // 0: the server's default
  // Idle this long (no request), the model is unloaded and loads again on its next request
  // (0: kept loaded).
  std::chrono::seconds keep_alive{0};
  bool warmup = true;
  std::map<std::string, Shape> warmup_shapes;  // concrete shapes for warm-up inputs
};

// The parts of manifest.json that are present, not yet checked against the model.
struct Manifest {
  nlohmann::json raw;
  std::string runtime = "onnx";  // onnx, tflite or torchscript
  std::string model_file = "model.onnx";
  // The model's own provider preference (empty: the agent's execution_providers).
  std::vector<std::string> execution_providers;
  std::map<std::string, std::map<std::string, std::string>> provider_options;
};

// Parses manifest.json text. Throws Error(kInvalidArgument) naming the field for a malformed
// or unknown field.
Manifest ParseManifest(const std::string& text);

// What the runtime needs from the manifest before it loads the model: its provider
// preference, the declared tensors
// (TorchScript's signature, which must then give datatype and shape) and declared input
// shapes (TFLite inputs the interpreter would resize). Throws Error(kInvalidArgument).
void ApplyDeclaredTensors(const Manifest& manifest, RuntimeOptions& options);

// Combines the model's own schema with the manifest. Throws Error(kInvalidArgument) when the
// manifest contradicts the model (unknown tensor, other datatype, incompatible shape) or asks
// for batching the model cannot do.
ModelConfig BuildModelConfig(const std::string& name, const std::string& version,
                             const std::filesystem::path& model_path,
                             const std::vector<TensorSpec>& model_inputs,
                             const std::vector<TensorSpec>& model_outputs,
                             const Manifest& manifest);

}  // namespace outpost
