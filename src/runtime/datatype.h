// Tensor element types as the KServe v2 protocol names them ("FP32", "BYTES", ...).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace outpost {

enum class DataType {
  kBool,
  kUint8,
  kUint16,
  kUint32,
  kUint64,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kFp16,
  kBf16,
  kFp32,
  kFp64,
  kBytes,
};

std::string_view DataTypeName(DataType type);
std::optional<DataType> ParseDataType(std::string_view name);
// Bytes per element; 0 for BYTES, whose elements vary in length.
size_t ElementSize(DataType type);

}  // namespace outpost
