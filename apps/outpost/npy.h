// NumPy .npy files (format versions 1-3, little-endian or byte-sized types, C order): the
// array files ML engineers already have, as tensors for `outpost infer`.
#pragma once

#include <string>

#include "runtime/tensor.h"

namespace outpost {

// Throws Error(kInvalidArgument) naming `what` for anything it cannot read exactly.
Tensor ReadNpy(const std::string& bytes, const std::string& what);
std::string WriteNpy(const Tensor& tensor);  // not for BYTES

}  // namespace outpost
