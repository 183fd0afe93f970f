// TFLite's sparse constant tensors (the input of DENSIFY): a dense copy made at import time.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "schema_generated.h"

namespace outpost::tflite {

// The dense bytes (row-major, `element_size` bytes each) of `tensor` with sparse `data`.
// Throws Error(kInvalidArgument) for metadata that does not describe `shape`, data that runs
// out or is left over, or a dense size above `max_bytes`.
std::string Densify(const ::tflite::Tensor& tensor, std::span<const uint8_t> data,
                    const std::vector<int64_t>& shape, size_t element_size, uint64_t max_bytes);

}  // namespace outpost::tflite
