#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/datatype.h"

namespace outpost {

using Shape = std::vector<int64_t>;

// A tensor in the protocol's raw form: row-major little-endian elements in `data`. BYTES
// elements are each a 4-byte little-endian length followed by that many bytes, which is the
// KServe binary form, so that a tensor crosses every front end without re-encoding.
struct Tensor {
  std::string name;
  DataType dtype = DataType::kFp32;
  Shape shape;
  std::string data;
};

// The declared form of a model input or output; -1 marks a dimension of any size.
struct TensorSpec {
  std::string name;
  DataType dtype = DataType::kFp32;
  Shape shape;
};

// Element count of a concrete shape; throws Error(kInvalidArgument) on a negative dimension
// or an overflow past `limit` elements.
uint64_t ElementCount(const Shape& shape, uint64_t limit = UINT64_MAX / 16);

std::string ShapeToString(const Shape& shape);

// Checks that `data` holds exactly the elements `shape` calls for (for BYTES: that it parses
// into exactly that many length-prefixed strings). Throws Error(kInvalidArgument) saying what
// is wrong, naming `what`.
void ValidateTensorData(const Tensor& tensor, std::string_view what);

// Splits BYTES data into its elements; throws Error(kInvalidArgument) on a malformed buffer.
std::vector<std::string_view> SplitBytesElements(std::string_view data);
void AppendBytesElement(std::string& out, std::string_view element);

// True when `shape` fits `spec` (same rank, fixed dimensions equal).
bool ShapeMatches(const Shape& spec, const Shape& shape);

}  // namespace outpost
