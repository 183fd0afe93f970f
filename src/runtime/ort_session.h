// The process's one ONNX Runtime environment (global thread pools) and the session options
// every model is loaded with, for the building blocks that drive ORT sessions themselves.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "runtime/model.h"

namespace outpost {

Ort::Env& OrtEnv();
// Graph optimizations on, the shared thread pools, no execution provider beyond CPU.
Ort::SessionOptions BaseSessionOptions(const RuntimeOptions& options);
// Adds one execution provider (ORT's name, e.g. "CUDAExecutionProvider") with its options;
// throws Ort::Exception when this build or device cannot load it.
void AppendProvider(Ort::SessionOptions& so, const std::string& provider,
                    const std::map<std::string, std::string>& provider_options);

// Creates a session on the first preferred provider that starts one (CPU last), recording the
// providers passed over and why in `placement` (and in the log, naming `origin`).
Ort::Session CreatePlacedSession(const RuntimeOptions& options, const std::string& origin,
                                 const std::function<Ort::Session(Ort::SessionOptions&)>& create,
                                 Placement& placement);

}  // namespace outpost
