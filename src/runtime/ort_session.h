// The process's one ONNX Runtime environment (global thread pools) and the session options
// every model is loaded with, for the building blocks that drive ORT sessions themselves.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <filesystem>

#include "runtime/model.h"

namespace outpost {

Ort::Env& OrtEnv();
// Graph optimizations on, the shared thread pools, and the preferred execution providers
// (a provider that is missing or fails to start is skipped with a warning: CPU remains).
Ort::SessionOptions MakeSessionOptions(const std::filesystem::path& path,
                                       const RuntimeOptions& options);

}  // namespace outpost
