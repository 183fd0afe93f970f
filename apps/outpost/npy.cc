#include "npy.h"

#include <cstring>
#include <map>

#include "core/error.h"

namespace outpost {
namespace {

const std::map<std::string, DataType>& Descrs() {
  static const std::map<std::string, DataType> kDescrs = {
      {"|b1", DataType::kBool},   {"|u1", DataType::kUint8},  {"<u2", DataType::kUint16},
      {"<u4", DataType::kUint32}, {"<u8", DataType::kUint64}, {"|i1", DataType::kInt8},
      {"<i2", DataType::kInt16},  {"<i4", DataType::kInt32},  {"<i8", DataType::kInt64},
      {"<f2", DataType::kFp16},   {"<f4", DataType::kFp32},   {"<f8", DataType::kFp64}};
  return kDescrs;
}

// The value of 'key' in the header's Python dict literal, as text.
std::string DictValue(const std::string& header, const std::string& key, const std::string& what) {
  size_t k = header.find("'" + key + "'");
  if (k == std::string::npos)
    Fail(ErrorCode::kInvalidArgument, what + ": .npy header has no '" + key + "'");
  size_t colon = header.find(':', k);
  if (colon == std::string::npos)
    Fail(ErrorCode::kInvalidArgument, what + ": malformed .npy header");
  size_t start = header.find_first_not_of(' ', colon + 1);
  size_t end =
      header[start] == '(' ? header.find(')', start) + 1 : header.find_first_of(",}", start);
  if (start == std::string::npos || end == std::string::npos || end <= start) {
    Fail(ErrorCode::kInvalidArgument, what + ": malformed .npy header");
  }
  return header.substr(start, end - start);
}

}  // namespace

Tensor ReadNpy(const std::string& bytes, const std::string& what) {
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    Fail(ErrorCode::kInvalidArgument, what + ": not a .npy file");
  int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) Fail(ErrorCode::kInvalidArgument, what + ": truncated .npy header");
    uint32_t len;
    std::memcpy(&len, bytes.data() + 8, 4);
    header_len = len;
    offset = 12;
  } else {
    Fail(ErrorCode::kInvalidArgument,
         what + ": .npy format version " + std::to_string(major) + " is not supported");
  }
  if (header_len > bytes.size() - offset)
    Fail(ErrorCode::kInvalidArgument, what + ": truncated .npy header");
  std::string header = bytes.substr(offset, header_len);
  std::string descr = DictValue(header, "descr", what);
  if (descr.size() < 2 || (descr.front() != '\'' && descr.front() != '"'))
    Fail(ErrorCode::kInvalidArgument, what + ": bad dtype");
  descr = descr.substr(1, descr.size() - 2);
  if (descr == "<b1" || descr == "=b1") descr = "|b1";
  if (descr == "<u1") descr = "|u1";
  if (descr == "<i1") descr = "|i1";
  auto dt = Descrs().find(descr);
  if (dt == Descrs().end()) {
    Fail(ErrorCode::kInvalidArgument,
         what + ": dtype '" + descr + "' is not supported (little-endian numbers and bool only)");
  }
  if (DictValue(header, "fortran_order", what) != "False") {
    Fail(ErrorCode::kInvalidArgument,
         what + ": Fortran-ordered arrays are not supported (use np.ascontiguousarray)");
  }
  std::string shape_text = DictValue(header, "shape", what);
  Tensor t;
  t.dtype = dt->second;
  for (size_t i = 1; i + 1 < shape_text.size();) {
    size_t next = shape_text.find_first_of(",)", i);
    std::string dim = shape_text.substr(i, next - i);
    dim.erase(0, dim.find_first_not_of(' '));
    if (!dim.empty()) {
      size_t used = 0;
      long long v = -1;
      try {
        v = std::stoll(dim, &used);
      } catch (const std::exception&) {
      }
      if (v < 0 || used != dim.size())
        Fail(ErrorCode::kInvalidArgument, what + ": bad shape " + shape_text);
      t.shape.push_back(v);
    }
    i = next + 1;
  }
  uint64_t need = ElementCount(t.shape) * ElementSize(t.dtype);
  size_t data = offset + header_len;
  if (bytes.size() - data != need) {
    Fail(ErrorCode::kInvalidArgument, what + ": shape " + ShapeToString(t.shape) + " needs " +
                                          std::to_string(need) + " bytes of data, the file has " +
                                          std::to_string(bytes.size() - data));
  }
  t.data = bytes.substr(data);
  return t;
}

std::string WriteNpy(const Tensor& t) {
  std::string descr;
  for (const auto& [d, type] : Descrs()) {
    if (type == t.dtype) descr = d;
  }
  if (descr.empty())
    Fail(ErrorCode::kInvalidArgument,
         "cannot write " + std::string(DataTypeName(t.dtype)) + " as .npy");
  std::string shape = "(";
  for (size_t i = 0; i < t.shape.size(); ++i)
    shape +=
        std::to_string(t.shape[i]) + (t.shape.size() == 1 || i + 1 < t.shape.size() ? "," : "");
  shape += ")";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + t.data;
}

}  // namespace outpost
