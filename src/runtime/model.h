// A loaded model, whatever runtime runs it. Run() is safe to call from several threads at
// once; the scheduler decides how many do.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace outpost {

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
};

struct RuntimeOptions {
  // Execution providers to try, in order of preference; CPU is always the last resort.
  std::vector<std::string> execution_providers;
  bool memory_arena = true;
};

// Loads an ONNX model with ONNX Runtime. Throws Error(kInvalidArgument) for a file ORT
// refuses or a model whose inputs/outputs are not tensors.
std::unique_ptr<Model> LoadOnnxModel(const std::filesystem::path& path,
                                     const RuntimeOptions& options);

// Sets the process-wide ORT thread pools shared by every model. Call before the first load;
// 0 threads means one per core; `spin` lets idle pool threads spin briefly before sleeping.
void ConfigureOnnxRuntime(int intra_op_threads, int inter_op_threads, bool spin);

std::string OnnxRuntimeVersion();
std::vector<std::string> OnnxRuntimeProviders();

}  // namespace outpost
