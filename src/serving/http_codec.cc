#include "serving/http_codec.h"

#include <charconv>
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "serving/half.h"

namespace outpost {
namespace {

using json = nlohmann::json;
constexpr int kMaxNesting = 32;

[[noreturn]] void Bad(const std::string& message) { Fail(ErrorCode::kInvalidArgument, message); }

template <typename T>
void AppendRaw(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

template <typename T>
void AppendInteger(std::string& out, const json& v, const std::string& where) {
  if (v.is_number_unsigned()) {
    auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) Bad(where + ": " + v.dump() + " is out of range");
    AppendRaw<T>(out, static_cast<T>(u));
  } else if (v.is_number_integer()) {
    auto i = v.get<int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
      if (i < 0) Bad(where + ": " + v.dump() + " is out of range");
      if (static_cast<uint64_t>(i) > std::numeric_limits<T>::max()) Bad(where + ": " + v.dump() + " is out of range");
    } else {
      if (i < std::numeric_limits<T>::min() || i > std::numeric_limits<T>::max()) {
        Bad(where + ": " + v.dump() + " is out of range");
      }
    }
    AppendRaw<T>(out, static_cast<T>(i));
  } else {
    Bad(where + ": expected an integer, got " + std::string(v.type_name()));
  }
}

void AppendElement(std::string& out, const json& v, DataType dt, const std::string& where) {
  auto need_number = [&] {
    if (!v.is_number()) Bad(where + ": expected a number, got " + std::string(v.type_name()));
  };
  switch (dt) {
    case DataType::kBool:
      if (!v.is_boolean()) Bad(where + ": expected true or false, got " + std::string(v.type_name()));
      AppendRaw<uint8_t>(out, v.get<bool>() ? 1 : 0);
      return;
    case DataType::kUint8: return AppendInteger<uint8_t>(out, v, where);
    case DataType::kUint16: return AppendInteger<uint16_t>(out, v, where);
    case DataType::kUint32: return AppendInteger<uint32_t>(out, v, where);
    case DataType::kUint64: return AppendInteger<uint64_t>(out, v, where);
    case DataType::kInt8: return AppendInteger<int8_t>(out, v, where);
    case DataType::kInt16: return AppendInteger<int16_t>(out, v, where);
    case DataType::kInt32: return AppendInteger<int32_t>(out, v, where);
    case DataType::kInt64: return AppendInteger<int64_t>(out, v, where);
    case DataType::kFp16: need_number(); return AppendRaw<uint16_t>(out, FloatToHalf(v.get<float>()));
    case DataType::kBf16: need_number(); return AppendRaw<uint16_t>(out, FloatToBf16(v.get<float>()));
    case DataType::kFp32: need_number(); return AppendRaw<float>(out, v.get<float>());
    case DataType::kFp64: need_number(); return AppendRaw<double>(out, v.get<double>());
    case DataType::kBytes:
      if (!v.is_string()) Bad(where + ": expected a string, got " + std::string(v.type_name()));
      return AppendBytesElement(out, v.get_ref<const std::string&>());
  }
}

// "data" may be flat or nested like the shape; either way elements are taken in row-major order.
void FlattenInto(std::string& out, const json& v, DataType dt, const std::string& where, uint64_t& count,
                 uint64_t limit, int depth) {
  if (v.is_array()) {
    if (depth >= kMaxNesting) Bad(where + ": data is nested too deeply");
    for (const auto& e : v) FlattenInto(out, e, dt, where, count, limit, depth + 1);
    return;
  }
  if (++count > limit) Bad(where + ": data has more elements than the shape holds (" + std::to_string(limit) + ")");
  AppendElement(out, v, dt, where);
}

std::string RequireString(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) Bad(where + ": missing '" + key + "'");
  if (!it->is_string()) Bad(where + ": '" + key + "' must be a string");
  return it->get<std::string>();
}

Shape ParseShape(const json& obj, const std::string& where) {
  auto it = obj.find("shape");
  if (it == obj.end()) Bad(where + ": missing 'shape'");
  if (!it->is_array()) Bad(where + ": 'shape' must be an array of non-negative integers");
  Shape shape;
  for (const auto& d : *it) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0 || (d.is_number_unsigned() && d.get<uint64_t>() > INT64_MAX)) {
      Bad(where + ": 'shape' must be an array of non-negative integers");
    }
    shape.push_back(d.get<int64_t>());
  }
  return shape;
}

const json* FindParameters(const json& obj, const std::string& where) {
  auto it = obj.find("parameters");
  if (it == obj.end()) return nullptr;
  if (!it->is_object()) Bad(where + ": 'parameters' must be an object");
  return &*it;
}

}  // namespace

std::optional<size_t> ParseHeaderLength(std::string_view value) {
  size_t n = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || ptr != value.data() + value.size() || value.empty()) return std::nullopt;
  return n;
}

InferRequest DecodeHttpInferRequest(std::string_view body, std::optional<size_t> header_length) {
  if (header_length && *header_length > body.size()) {
    Bad("Inference-Header-Content-Length " + std::to_string(*header_length) + " exceeds the body of " +
        std::to_string(body.size()) + " bytes");
  }
  std::string_view header = header_length ? body.substr(0, *header_length) : body;
  std::string_view binary = header_length ? body.substr(*header_length) : std::string_view{};
  json j = json::parse(header.begin(), header.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) Bad("request body is not valid JSON");
  if (!j.is_object()) Bad("request body must be a JSON object");

  InferRequest req;
  if (auto it = j.find("id"); it != j.end()) {
    if (!it->is_string()) Bad("'id' must be a string");
    req.id = it->get<std::string>();
  }
  if (const json* params = FindParameters(j, "request")) {
    if (auto it = params->find("binary_data_output"); it != params->end()) {
      if (!it->is_boolean()) Bad("parameter 'binary_data_output' must be a boolean");
      req.binary_outputs = it->get<bool>();
    }
    if (auto it = params->find("timeout"); it != params->end()) {
      if (!it->is_number_integer() || it->get<int64_t>() < 0) Bad("parameter 'timeout' must be microseconds >= 0");
      req.timeout = std::chrono::microseconds(it->get<int64_t>());
    }
  }
  auto inputs = j.find("inputs");
  if (inputs == j.end() || !inputs->is_array()) Bad("'inputs' must be an array");
  size_t binary_offset = 0;
  for (size_t i = 0; i < inputs->size(); ++i) {
    const json& in = (*inputs)[i];
    std::string where = "input " + std::to_string(i);
    if (!in.is_object()) Bad(where + " must be an object");
    Tensor t;
    t.name = RequireString(in, "name", where);
    where = "input '" + t.name + "'";
    auto dtype_name = RequireString(in, "datatype", where);
    auto dtype = ParseDataType(dtype_name);
    if (!dtype) Bad(where + ": unknown datatype '" + dtype_name + "'");
    t.dtype = *dtype;
    t.shape = ParseShape(in, where);
    uint64_t count = ElementCount(t.shape);
    std::optional<uint64_t> binary_size;
    if (const json* params = FindParameters(in, where)) {
      if (auto it = params->find("binary_data_size"); it != params->end()) {
        if (!it->is_number_unsigned()) Bad(where + ": 'binary_data_size' must be a non-negative integer");
        binary_size = it->get<uint64_t>();
      }
    }
    if (binary_size) {
      if (!header_length) Bad(where + ": binary_data_size given without an Inference-Header-Content-Length header");
      if (in.contains("data")) Bad(where + ": has both 'data' and binary_data_size");
      if (*binary_size > binary.size() - binary_offset) {
        Bad(where + ": binary_data_size " + std::to_string(*binary_size) + " runs past the end of the body (" +
            std::to_string(binary.size() - binary_offset) + " bytes left)");
      }
      t.data.assign(binary.substr(binary_offset, *binary_size));
      binary_offset += *binary_size;
    } else {
      auto data = in.find("data");
      if (data == in.end()) Bad(where + ": missing 'data'");
      uint64_t seen = 0;
      if (t.dtype != DataType::kBytes) t.data.reserve(count * ElementSize(t.dtype));
      FlattenInto(t.data, *data, t.dtype, where, seen, count, 0);
      if (seen != count) {
        Bad(where + ": shape " + ShapeToString(t.shape) + " needs " + std::to_string(count) + " elements, 'data' has " +
            std::to_string(seen));
      }
    }
    ValidateTensorData(t, "input");
    req.inputs.push_back(std::move(t));
  }
  if (binary_offset != binary.size()) {
    Bad("the body has " + std::to_string(binary.size() - binary_offset) +
        " bytes after the JSON header that no input's binary_data_size accounts for");
  }
  if (auto outputs = j.find("outputs"); outputs != j.end()) {
    if (!outputs->is_array()) Bad("'outputs' must be an array");
    for (size_t i = 0; i < outputs->size(); ++i) {
      const json& out = (*outputs)[i];
      std::string where = "output " + std::to_string(i);
      if (!out.is_object()) Bad(where + " must be an object");
      RequestedOutput ro{RequireString(out, "name", where), req.binary_outputs};
      if (const json* params = FindParameters(out, where)) {
        if (params->contains("classification")) Bad("output '" + ro.name + "': the classification extension is not supported");
        if (auto it = params->find("binary_data"); it != params->end()) {
          if (!it->is_boolean()) Bad("output '" + ro.name + "': 'binary_data' must be a boolean");
          ro.binary = it->get<bool>();
        }
      }
      req.outputs.push_back(std::move(ro));
    }
  }
  return req;
}

namespace {

void AppendJsonString(std::string& out, std::string_view s) {
  out += json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

template <typename T>
void AppendNumber(std::string& out, T v) {
  if constexpr (std::is_floating_point_v<T>) {
    // JSON has no NaN or infinity; these are the tokens Python's json module reads and writes.
    if (std::isnan(v)) {
      out += "NaN";
      return;
    }
    if (std::isinf(v)) {
      out += v > 0 ? "Infinity" : "-Infinity";
      return;
    }
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

template <typename T>
void AppendArray(std::string& out, const std::string& data) {
  size_t n = data.size() / sizeof(T);
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ',';
    T v;
    std::memcpy(&v, data.data() + i * sizeof(T), sizeof(T));
    if constexpr (std::is_same_v<T, int8_t> || std::is_same_v<T, uint8_t>) {
      AppendNumber(out, static_cast<int>(v));
    } else {
      AppendNumber(out, v);
    }
  }
}

void AppendTensorData(std::string& out, const Tensor& t) {
  out += '[';
  switch (t.dtype) {
    case DataType::kBool: {
      for (size_t i = 0; i < t.data.size(); ++i) out += (i ? "," : ""), out += t.data[i] ? "true" : "false";
      break;
    }
    case DataType::kUint8: AppendArray<uint8_t>(out, t.data); break;
    case DataType::kUint16: AppendArray<uint16_t>(out, t.data); break;
    case DataType::kUint32: AppendArray<uint32_t>(out, t.data); break;
    case DataType::kUint64: AppendArray<uint64_t>(out, t.data); break;
    case DataType::kInt8: AppendArray<int8_t>(out, t.data); break;
    case DataType::kInt16: AppendArray<int16_t>(out, t.data); break;
    case DataType::kInt32: AppendArray<int32_t>(out, t.data); break;
    case DataType::kInt64: AppendArray<int64_t>(out, t.data); break;
    case DataType::kFp32: AppendArray<float>(out, t.data); break;
    case DataType::kFp64: AppendArray<double>(out, t.data); break;
    case DataType::kFp16:
    case DataType::kBf16: {
      for (size_t i = 0; i + 1 < t.data.size(); i += 2) {
        if (i) out += ',';
        uint16_t h;
        std::memcpy(&h, t.data.data() + i, 2);
        AppendNumber(out, t.dtype == DataType::kFp16 ? HalfToFloat(h) : Bf16ToFloat(h));
      }
      break;
    }
    case DataType::kBytes: {
      bool first = true;
      for (auto e : SplitBytesElements(t.data)) {
        if (!first) out += ',';
        first = false;
        AppendJsonString(out, e);
      }
      break;
    }
  }
  out += ']';
}

}  // namespace

EncodedHttpResponse EncodeHttpInferResponse(const InferResponse& response, const InferRequest& request) {
  std::string out;
  out.reserve(256);
  out += "{\"model_name\":";
  AppendJsonString(out, response.model_name);
  out += ",\"model_version\":";
  AppendJsonString(out, response.model_version);
  if (!response.id.empty()) {
    out += ",\"id\":";
    AppendJsonString(out, response.id);
  }
  out += ",\"outputs\":[";
  std::vector<const Tensor*> binary;
  for (size_t i = 0; i < response.outputs.size(); ++i) {
    const Tensor& t = response.outputs[i];
    bool as_binary = request.binary_outputs;
    for (const auto& ro : request.outputs) {
      if (ro.name == t.name) as_binary = ro.binary;
    }
    if (i) out += ',';
    out += "{\"name\":";
    AppendJsonString(out, t.name);
    out += ",\"datatype\":\"";
    out += DataTypeName(t.dtype);
    out += "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (d) out += ',';
      AppendNumber(out, t.shape[d]);
    }
    out += ']';
    if (as_binary) {
      out += ",\"parameters\":{\"binary_data_size\":" + std::to_string(t.data.size()) + "}}";
      binary.push_back(&t);
    } else {
      out += ",\"data\":";
      AppendTensorData(out, t);
      out += '}';
    }
  }
  out += "]}";
  EncodedHttpResponse encoded;
  if (!binary.empty()) {
    encoded.header_length = out.size();
    for (const Tensor* t : binary) out += t->data;
  }
  encoded.body = std::move(out);
  return encoded;
}

}  // namespace outpost
