// PyTorch models on libtorch: TorchScript (.pt, torch.jit.save) and the PyTorch Mobile lite
// interpreter format (.ptl, _save_for_lite_interpreter). Built as a module of its own
// (lib/liboutpost_torch.so) that runtime/torch_backend.cc opens on first use: libtorch pulls
// in some 250 shared libraries, which an agent serving no PyTorch model must not load.
#pragma once

#include <string>

#include "runtime/model.h"

extern "C" {
// TorchScript files carry no tensor signature: `options->inputs` and `options->outputs` (from
// the manifest) name the tensors and give their datatypes and shapes, in forward()'s order.
// Returns the model, or null with `*error` saying why (a file libtorch refuses, a missing
// signature).
outpost::Model* outpost_torch_load(const char* path, const outpost::RuntimeOptions* options,
                                   std::string* error);
const char* outpost_torch_version();
}
