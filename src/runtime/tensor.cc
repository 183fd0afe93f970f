#include "runtime/tensor.h"

#include <cstring>

#include "core/error.h"

namespace outpost {

uint64_t ElementCount(const Shape& shape, uint64_t limit) {
  uint64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0)
      Fail(ErrorCode::kInvalidArgument,
           "shape " + ShapeToString(shape) + " has a negative dimension");
    if (d != 0 && count > limit / static_cast<uint64_t>(d)) {
      Fail(ErrorCode::kInvalidArgument, "shape " + ShapeToString(shape) + " is too large");
    }
    count *= static_cast<uint64_t>(d);
  }
  return count;
}

std::string ShapeToString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::vector<std::string_view> SplitBytesElements(std::string_view data) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < data.size()) {
    if (data.size() - pos < 4)
      Fail(ErrorCode::kInvalidArgument, "BYTES element length prefix is truncated");
    uint32_t len;
    std::memcpy(&len, data.data() + pos, 4);
    pos += 4;
    if (len > data.size() - pos) {
      Fail(ErrorCode::kInvalidArgument,
           "BYTES element of " + std::to_string(len) + " bytes runs past the end of the data");
    }
    out.push_back(data.substr(pos, len));
    pos += len;
  }
  return out;
}

void AppendBytesElement(std::string& out, std::string_view element) {
  uint32_t len = static_cast<uint32_t>(element.size());
  out.append(reinterpret_cast<const char*>(&len), 4);
  out.append(element);
}

void ValidateTensorData(const Tensor& tensor, std::string_view what) {
  uint64_t count = ElementCount(tensor.shape);
  if (tensor.dtype == DataType::kBytes) {
    size_t n = SplitBytesElements(tensor.data).size();
    if (n != count) {
      Fail(ErrorCode::kInvalidArgument,
           std::string(what) + " '" + tensor.name + "': shape " + ShapeToString(tensor.shape) +
               " needs " + std::to_string(count) + " BYTES elements, got " + std::to_string(n));
    }
    return;
  }
  uint64_t expected = count * ElementSize(tensor.dtype);
  if (tensor.data.size() != expected) {
    Fail(ErrorCode::kInvalidArgument,
         std::string(what) + " '" + tensor.name + "': shape " + ShapeToString(tensor.shape) +
             " of " + std::string(DataTypeName(tensor.dtype)) + " needs " +
             std::to_string(expected) + " bytes, got " + std::to_string(tensor.data.size()));
  }
}

bool ShapeMatches(const Shape& spec, const Shape& shape) {
  if (spec.size() != shape.size()) return false;
  for (size_t i = 0; i < spec.size(); ++i) {
    if (spec[i] >= 0 && spec[i] != shape[i]) return false;
  }
  return true;
}

}  // namespace outpost
