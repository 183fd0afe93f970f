// Picks the backend a package's "runtime" names. ONNX and imported TensorFlow Lite models run
// on ONNX Runtime; TorchScript models on libtorch when the build has it.
#include <algorithm>

#include "core/atomic_file.h"
#include "core/error.h"
#include "runtime/model.h"
#include "runtime/torch_backend.h"
#include "tflite/tflite_importer.h"

namespace outpost {

bool IsModelRuntime(std::string_view runtime) {
  return std::find(std::begin(kModelRuntimes), std::end(kModelRuntimes), runtime) !=
         std::end(kModelRuntimes);
}

std::string DefaultModelFile(std::string_view runtime) {
  if (runtime == "tflite") return "model.tflite";
  if (runtime == "torchscript") return "model.pt";
  return "model.onnx";
}

std::unique_ptr<Model> LoadModel(std::string_view runtime, const std::filesystem::path& path,
                                 const RuntimeOptions& options) {
  if (runtime == "onnx") return LoadOnnxModel(path, options);
  if (runtime == "tflite") {
    std::string bytes = ReadFile(path);
    tflite::ImportOptions import;
    import.input_shapes = options.input_shapes;
    tflite::ImportResult imported;
    try {
      imported = tflite::ImportTflite(bytes, import);
    } catch (const Error& e) {
      Fail(e.code(), path.string() + ": " + e.what());
    }
    bytes.clear();
    bytes.shrink_to_fit();
    return LoadOnnxModelFromMemory(imported.onnx, path.string(), options, "tensorflow_lite");
  }
  if (runtime == "torchscript") return LoadTorchScriptModel(path, options);
  Fail(ErrorCode::kInvalidArgument, "runtime '" + std::string(runtime) +
                                        "' is not one this agent has (onnx, tflite, torchscript)");
}

}  // namespace outpost
