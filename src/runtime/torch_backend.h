// The libtorch backend, opened on first use from lib/liboutpost_torch.so beside the programs
// (see torch/torch_model.h): an agent that serves no PyTorch model never loads libtorch.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "runtime/model.h"

namespace outpost {

// Throws Error(kInvalidArgument) for a model libtorch refuses, and when this build has no
// libtorch backend (built with OUTPOST_WITH_TORCH=OFF, or the module is missing).
std::unique_ptr<Model> LoadTorchScriptModel(const std::filesystem::path& path,
                                            const RuntimeOptions& options);
// Whether the module is there (without opening it), and libtorch's version (opens it; "" when
// it cannot be opened).
bool HaveTorchBackend();
std::string TorchVersion();

}  // namespace outpost
