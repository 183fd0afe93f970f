// A loaded model, whatever runtime runs it. Run() is safe to call from several threads at
// once; the scheduler decides how many do.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/ort_format_cache.h"
#include "runtime/tensor.h"

namespace outpost {

// Where a model runs: the execution provider its session was created with, and the preferred
// ones passed over on the way (with why: not in this build, or failed to start a session).
struct Placement {
  std::string provider;
  std::vector<std::pair<std::string, std::string>> skipped;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const std::vector<TensorSpec>& inputs() const = 0;
  virtual const std::vector<TensorSpec>& outputs() const = 0;
  // Runs once. Returns the outputs named in `output_names`, in that order (every output, in
  // the model's order, when it is empty). Throws Error: kInvalidArgument for inputs the model
  // rejects, kInternal for a runtime failure.
  virtual std::vector<Tensor> Run(const std::vector<Tensor>& inputs,
                                  const std::vector<std::string>& output_names) = 0;
  // Triton's name for what runs the model ("onnxruntime_onnx", "tensorflow_lite",
  // "pytorch_libtorch").
  virtual std::string platform() const = 0;
  virtual Placement placement() const = 0;
  // True when runs since the last ShrinkArena may have grown the runtime's memory arena; then
  // ShrinkArena runs `inputs` (a cheap run) telling the runtime to give back what no run uses.
  // Runs keep their arena between them (freeing it after each large one made every camera
  // frame take its buffers afresh): the caller shrinks it once they stop.
  virtual bool ArenaGrown() const { return false; }
  virtual void ShrinkArena(const std::vector<Tensor>& inputs) { (void)inputs; }
};

struct RuntimeOptions {
  // Execution providers to try, in order of preference: the first that creates a session is
  // used; CPU is always the last resort.
  std::vector<std::string> execution_providers;
  // Options of each provider, by provider name (ORT's own option keys).
  std::map<std::string, std::map<std::string, std::string>> provider_options;
  bool memory_arena = true;
  // Where ONNX models run on the CPU are kept in ORT format, their weights used in place.
  OrtFormatCache ort_format;
  // Input shapes that replace the model's own (-1: any size), for formats whose interpreter
  // resizes inputs at run time (TFLite); from the manifest's declared inputs.
  std::map<std::string, std::vector<int64_t>> input_shapes;
  // The tensors the manifest declares, for formats that carry no signature (TorchScript).
  std::vector<TensorSpec> inputs, outputs;
};

// Loads an ONNX model with ONNX Runtime. Throws Error(kInvalidArgument) for a file ORT
// refuses or a model whose inputs/outputs are not tensors.
std::unique_ptr<Model> LoadOnnxModel(const std::filesystem::path& path,
                                     const RuntimeOptions& options);
// The same from a serialized model in memory; `origin` names it in messages and `platform`
// is what the model reports (an imported TFLite model runs on ORT but stays "tensorflow_lite").
std::unique_ptr<Model> LoadOnnxModelFromMemory(std::string_view bytes, const std::string& origin,
                                               const RuntimeOptions& options,
                                               const std::string& platform);

// The model formats a package's "runtime" names.
inline constexpr const char* kModelRuntimes[] = {"onnx", "tflite", "torchscript"};
bool IsModelRuntime(std::string_view runtime);
// The file name a package of that runtime has when its manifest names none.
std::string DefaultModelFile(std::string_view runtime);
// Loads a model of any runtime; throws Error(kInvalidArgument) for a file its runtime refuses
// and for a runtime this build does not have.
std::unique_ptr<Model> LoadModel(std::string_view runtime, const std::filesystem::path& path,
                                 const RuntimeOptions& options);

// Sets the process-wide ORT thread pools shared by every model. Call before the first load;
// 0 threads means one per core; `spin` lets idle pool threads spin briefly before sleeping.
void ConfigureOnnxRuntime(int intra_op_threads, int inter_op_threads, bool spin);

// Pays ONNX Runtime's one-time costs (environment, global thread pools, kernel registries)
// with a one-node model, so that they are not counted against the first real model's memory.
void WarmUpOnnxRuntime();

std::string OnnxRuntimeVersion();
// The providers this ORT build lists, and whether each can start a session here: listed is
// not usable (the npm build lists CUDA and TensorRT without their libraries).
std::vector<std::string> OnnxRuntimeProviders();
struct ProviderStatus {
  std::string name;
  bool usable = false;
  std::string reason;  // why not, when not
};
std::vector<ProviderStatus> ProbeOnnxRuntimeProviders();

}  // namespace outpost
