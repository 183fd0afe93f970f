#include "serving/http_codec.h"

#include <charconv>
#include <cmath>
#include <limits>

#include <simdjson.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "serving/half.h"

namespace outpost {
namespace {

using json = nlohmann::json;
using simdjson::dom::element;
using simdjson::dom::element_type;
constexpr int kMaxNesting = 32;

[[noreturn]] void Bad(const std::string& message) { Fail(ErrorCode::kInvalidArgument, message); }

std::string TypeName(const element& v) {
  switch (v.type()) {
    case element_type::ARRAY:
      return "array";
    case element_type::OBJECT:
      return "object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
      return "number";
    case element_type::STRING:
      return "string";
    case element_type::BOOL:
      return "boolean";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "unknown";
}

std::string Dump(const element& v) { return simdjson::to_string(v); }

template <typename T>
void AppendRaw(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

template <typename T>
void AppendInteger(std::string& out, const element& v, const std::string& where) {
  if (v.type() == element_type::UINT64 ||
      (v.type() == element_type::INT64 && v.get_int64().value_unsafe() >= 0)) {
    uint64_t u = v.type() == element_type::UINT64
                     ? v.get_uint64().value_unsafe()
                     : static_cast<uint64_t>(v.get_int64().value_unsafe());
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
      Bad(where + ": " + Dump(v) + " is out of range");
    AppendRaw<T>(out, static_cast<T>(u));
  } else if (v.type() == element_type::INT64) {
    int64_t i = v.get_int64().value_unsafe();
    if (std::is_unsigned_v<T> || i < static_cast<int64_t>(std::numeric_limits<T>::min())) {
      Bad(where + ": " + Dump(v) + " is out of range");
    }
    AppendRaw<T>(out, static_cast<T>(i));
  } else {
    Bad(where + ": expected an integer, got " + TypeName(v));
  }
}

double Number(const element& v, const std::string& where) {
  switch (v.type()) {
    case element_type::DOUBLE:
      return v.get_double().value_unsafe();
    case element_type::INT64:
      return static_cast<double>(v.get_int64().value_unsafe());
    case element_type::UINT64:
      return static_cast<double>(v.get_uint64().value_unsafe());
    default:
      Bad(where + ": expected a number, got " + TypeName(v));
  }
}

void AppendElement(std::string& out, const element& v, DataType dt, const std::string& where) {
  switch (dt) {
    case DataType::kBool:
      if (v.type() != element_type::BOOL)
        Bad(where + ": expected true or false, got " + TypeName(v));
      AppendRaw<uint8_t>(out, v.get_bool().value_unsafe() ? 1 : 0);
      return;
    case DataType::kUint8:
      return AppendInteger<uint8_t>(out, v, where);
    case DataType::kUint16:
      return AppendInteger<uint16_t>(out, v, where);
    case DataType::kUint32:
      return AppendInteger<uint32_t>(out, v, where);
    case DataType::kUint64:
      return AppendInteger<uint64_t>(out, v, where);
    case DataType::kInt8:
      return AppendInteger<int8_t>(out, v, where);
    case DataType::kInt16:
      return AppendInteger<int16_t>(out, v, where);
    case DataType::kInt32:
      return AppendInteger<int32_t>(out, v, where);
    case DataType::kInt64:
      return AppendInteger<int64_t>(out, v, where);
    case DataType::kFp16:
      return AppendRaw<uint16_t>(out, FloatToHalf(static_cast<float>(Number(v, where))));
    case DataType::kBf16:
      return AppendRaw<uint16_t>(out, FloatToBf16(static_cast<float>(Number(v, where))));
    case DataType::kFp32:
      return AppendRaw<float>(out, static_cast<float>(Number(v, where)));
    case DataType::kFp64:
      return AppendRaw<double>(out, Number(v, where));
    case DataType::kBytes:
      if (v.type() != element_type::STRING) Bad(where + ": expected a string, got " + TypeName(v));
      return AppendBytesElement(out, v.get_string().value_unsafe());
  }
}

// "data" may be flat or nested like the shape; either way elements are taken in row-major order.
void FlattenInto(std::string& out, const element& v, DataType dt, const std::string& where,
                 uint64_t& count, uint64_t limit, int depth) {
  if (v.type() == element_type::ARRAY) {
    if (depth >= kMaxNesting) Bad(where + ": data is nested too deeply");
    simdjson::dom::array items = v.get_array().value_unsafe();
    for (element e : items) FlattenInto(out, e, dt, where, count, limit, depth + 1);
    return;
  }
  if (++count > limit)
    Bad(where + ": data has more elements than the shape holds (" + std::to_string(limit) + ")");
  AppendElement(out, v, dt, where);
}

// A field of a JSON object, or nullopt when absent.
std::optional<element> Field(const element& obj, std::string_view key) {
  element v;
  if (obj.at_key(key).get(v) != simdjson::SUCCESS) return std::nullopt;
  return v;
}

std::string RequireString(const element& obj, const char* key, const std::string& where) {
  auto v = Field(obj, key);
  if (!v) Bad(where + ": missing '" + key + "'");
  if (v->type() != element_type::STRING) Bad(where + ": '" + key + "' must be a string");
  return std::string(v->get_string().value_unsafe());
}

Shape ParseShape(const element& obj, const std::string& where) {
  auto v = Field(obj, "shape");
  if (!v) Bad(where + ": missing 'shape'");
  if (v->type() != element_type::ARRAY)
    Bad(where + ": 'shape' must be an array of non-negative integers");
  Shape shape;
  simdjson::dom::array dims = v->get_array().value_unsafe();
  for (element d : dims) {
    if (d.type() != element_type::INT64 || d.get_int64().value_unsafe() < 0) {
      Bad(where + ": 'shape' must be an array of non-negative integers");
    }
    shape.push_back(d.get_int64().value_unsafe());
  }
  return shape;
}

std::optional<element> FindParameters(const element& obj, const std::string& where) {
  auto v = Field(obj, "parameters");
  if (v && v->type() != element_type::OBJECT) Bad(where + ": 'parameters' must be an object");
  return v;
}

std::optional<bool> BoolParameter(const std::optional<element>& params, const char* key,
                                  const std::string& what) {
  if (!params) return std::nullopt;
  auto v = Field(*params, key);
  if (!v) return std::nullopt;
  if (v->type() != element_type::BOOL) Bad(what + " must be a boolean");
  return v->get_bool().value_unsafe();
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
    Bad("Inference-Header-Content-Length " + std::to_string(*header_length) +
        " exceeds the body of " + std::to_string(body.size()) + " bytes");
  }
  std::string_view header = header_length ? body.substr(0, *header_length) : body;
  std::string_view binary = header_length ? body.substr(*header_length) : std::string_view{};
  // simdjson: request bodies are the one large JSON the agent parses on its hot path.
  simdjson::dom::parser parser;
  element j;
  if (auto error = parser.parse(header.data(), header.size()).get(j); error != simdjson::SUCCESS) {
    Bad(std::string("request body is not valid JSON: ") + simdjson::error_message(error));
  }
  if (j.type() != element_type::OBJECT) Bad("request body must be a JSON object");

  InferRequest req;
  if (auto id = Field(j, "id")) {
    if (id->type() != element_type::STRING) Bad("'id' must be a string");
    req.id = std::string(id->get_string().value_unsafe());
  }
  if (auto params = FindParameters(j, "request")) {
    if (auto b = BoolParameter(params, "binary_data_output", "parameter 'binary_data_output'"))
      req.binary_outputs = *b;
    if (auto t = Field(*params, "timeout")) {
      if (t->type() != element_type::INT64 || t->get_int64().value_unsafe() < 0) {
        Bad("parameter 'timeout' must be microseconds >= 0");
      }
      req.timeout = std::chrono::microseconds(t->get_int64().value_unsafe());
    }
  }
  auto inputs = Field(j, "inputs");
  if (!inputs || inputs->type() != element_type::ARRAY) Bad("'inputs' must be an array");
  size_t binary_offset = 0, index = 0;
  simdjson::dom::array input_list = inputs->get_array().value_unsafe();
  for (element in : input_list) {
    std::string where = "input " + std::to_string(index++);
    if (in.type() != element_type::OBJECT) Bad(where + " must be an object");
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
    if (auto params = FindParameters(in, where)) {
      if (auto size = Field(*params, "binary_data_size")) {
        if (size->type() == element_type::UINT64) {
          binary_size = size->get_uint64().value_unsafe();
        } else if (size->type() == element_type::INT64 && size->get_int64().value_unsafe() >= 0) {
          binary_size = static_cast<uint64_t>(size->get_int64().value_unsafe());
        } else {
          Bad(where + ": 'binary_data_size' must be a non-negative integer");
        }
      }
    }
    auto data = Field(in, "data");
    if (binary_size) {
      if (!header_length)
        Bad(where + ": binary_data_size given without an Inference-Header-Content-Length header");
      if (data) Bad(where + ": has both 'data' and binary_data_size");
      if (*binary_size > binary.size() - binary_offset) {
        Bad(where + ": binary_data_size " + std::to_string(*binary_size) +
            " runs past the end of the body (" + std::to_string(binary.size() - binary_offset) +
            " bytes left)");
      }
      t.data.assign(binary.substr(binary_offset, *binary_size));
      binary_offset += *binary_size;
    } else {
      if (!data) Bad(where + ": missing 'data'");
      uint64_t seen = 0;
      // Reserve only what the body can actually hold, not what a declared shape claims.
      if (t.dtype != DataType::kBytes)
        t.data.reserve(std::min<uint64_t>(count, header.size()) * ElementSize(t.dtype));
      FlattenInto(t.data, *data, t.dtype, where, seen, count, 0);
      if (seen != count) {
        Bad(where + ": shape " + ShapeToString(t.shape) + " needs " + std::to_string(count) +
            " elements, 'data' has " + std::to_string(seen));
      }
    }
    ValidateTensorData(t, "input");
    req.inputs.push_back(std::move(t));
  }
  if (binary_offset != binary.size()) {
    Bad("the body has " + std::to_string(binary.size() - binary_offset) +
        " bytes after the JSON header that no input's binary_data_size accounts for");
  }
  if (auto outputs = Field(j, "outputs")) {
    if (outputs->type() != element_type::ARRAY) Bad("'outputs' must be an array");
    size_t i = 0;
    simdjson::dom::array output_list = outputs->get_array().value_unsafe();
    for (element out : output_list) {
      std::string where = "output " + std::to_string(i++);
      if (out.type() != element_type::OBJECT) Bad(where + " must be an object");
      RequestedOutput ro{RequireString(out, "name", where), req.binary_outputs};
      if (auto params = FindParameters(out, where)) {
        if (Field(*params, "classification"))
          Bad("output '" + ro.name + "': the classification extension is not supported");
        if (auto b =
                BoolParameter(params, "binary_data", "output '" + ro.name + "': 'binary_data'"))
          ro.binary = *b;
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
      for (size_t i = 0; i < t.data.size(); ++i)
        out += (i ? "," : ""), out += t.data[i] ? "true" : "false";
      break;
    }
    case DataType::kUint8:
      AppendArray<uint8_t>(out, t.data);
      break;
    case DataType::kUint16:
      AppendArray<uint16_t>(out, t.data);
      break;
    case DataType::kUint32:
      AppendArray<uint32_t>(out, t.data);
      break;
    case DataType::kUint64:
      AppendArray<uint64_t>(out, t.data);
      break;
    case DataType::kInt8:
      AppendArray<int8_t>(out, t.data);
      break;
    case DataType::kInt16:
      AppendArray<int16_t>(out, t.data);
      break;
    case DataType::kInt32:
      AppendArray<int32_t>(out, t.data);
      break;
    case DataType::kInt64:
      AppendArray<int64_t>(out, t.data);
      break;
    case DataType::kFp32:
      AppendArray<float>(out, t.data);
      break;
    case DataType::kFp64:
      AppendArray<double>(out, t.data);
      break;
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

EncodedHttpResponse EncodeHttpInferResponse(const InferResponse& response,
                                            const InferRequest& request) {
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
