#include "runtime/datatype.h"

#include <array>
#include <utility>

namespace outpost {
namespace {

struct Info {
  DataType type;
  std::string_view name;
  size_t size;
};

constexpr std::array<Info, 14> kInfo = {{
    {DataType::kBool, "BOOL", 1},
    {DataType::kUint8, "UINT8", 1},
    {DataType::kUint16, "UINT16", 2},
    {DataType::kUint32, "UINT32", 4},
    {DataType::kUint64, "UINT64", 8},
    {DataType::kInt8, "INT8", 1},
    {DataType::kInt16, "INT16", 2},
    {DataType::kInt32, "INT32", 4},
    {DataType::kInt64, "INT64", 8},
    {DataType::kFp16, "FP16", 2},
    {DataType::kBf16, "BF16", 2},
    {DataType::kFp32, "FP32", 4},
    {DataType::kFp64, "FP64", 8},
    {DataType::kBytes, "BYTES", 0},
}};

}  // namespace

std::string_view DataTypeName(DataType type) { return kInfo[static_cast<size_t>(type)].name; }

std::optional<DataType> ParseDataType(std::string_view name) {
  for (const auto& info : kInfo) {
    if (info.name == name) return info.type;
  }
  return std::nullopt;
}

size_t ElementSize(DataType type) { return kInfo[static_cast<size_t>(type)].size; }

}  // namespace outpost
