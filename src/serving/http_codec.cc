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
constexpr int kMaxNesting = 32;  // of a tensor's "data"
constexpr int kMaxDepth = 64;    // of the whole body
// Bodies up to this size are indexed whole by simdjson (several times faster); larger ones
// stream through nlohmann's parser, which takes no memory in proportion to the body.
constexpr size_t kIndexedJsonBytes = 1u << 20;
// simdjson's DOM for a body of n bytes: 4 bytes per byte for structural positions, 8 for the
// tape, 5/3 for unescaped strings, and the padded copy it reads from.
constexpr uint64_t kIndexBytesPerByte = 15;

[[noreturn]] void Bad(const std::string& message) { Fail(ErrorCode::kInvalidArgument, message); }

// One JSON value as the streaming parser hands it over (strings are borrowed).
struct Value {
  enum class Kind { kNull, kBool, kInt, kUint, kFloat, kString, kObject, kArray } kind;
  bool b = false;
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
  std::string_view s;
};

std::string TypeName(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kNull:
      return "null";
    case Value::Kind::kBool:
      return "boolean";
    case Value::Kind::kInt:
    case Value::Kind::kUint:
    case Value::Kind::kFloat:
      return "number";
    case Value::Kind::kString:
      return "string";
    case Value::Kind::kObject:
      return "object";
    case Value::Kind::kArray:
      return "array";
  }
  return "unknown";
}

std::string Dump(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kInt:
      return std::to_string(v.i);
    case Value::Kind::kUint:
      return std::to_string(v.u);
    default:
      return TypeName(v);
  }
}

// A non-negative integer that fits int64 (the parser reports those as unsigned).
std::optional<int64_t> NonNegative(const Value& v) {
  if (v.kind == Value::Kind::kInt && v.i >= 0) return v.i;
  if (v.kind == Value::Kind::kUint && v.u <= static_cast<uint64_t>(INT64_MAX))
    return static_cast<int64_t>(v.u);
  return std::nullopt;
}

template <typename T>
void AppendRaw(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

template <typename T>
void AppendInteger(std::string& out, const Value& v, const auto& where) {
  if (v.kind == Value::Kind::kUint || (v.kind == Value::Kind::kInt && v.i >= 0)) {
    uint64_t u = v.kind == Value::Kind::kUint ? v.u : static_cast<uint64_t>(v.i);
    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
      Bad(where() + ": " + Dump(v) + " is out of range");
    AppendRaw<T>(out, static_cast<T>(u));
  } else if (v.kind == Value::Kind::kInt) {
    if (std::is_unsigned_v<T> || v.i < static_cast<int64_t>(std::numeric_limits<T>::min()))
      Bad(where() + ": " + Dump(v) + " is out of range");
    AppendRaw<T>(out, static_cast<T>(v.i));
  } else {
    Bad(where() + ": expected an integer, got " + TypeName(v));
  }
}

double Number(const Value& v, const auto& where) {
  switch (v.kind) {
    case Value::Kind::kFloat:
      return v.d;
    case Value::Kind::kInt:
      return static_cast<double>(v.i);
    case Value::Kind::kUint:
      return static_cast<double>(v.u);
    default:
      Bad(where() + ": expected a number, got " + TypeName(v));
  }
}

// `where()` names the element's input in a message; it is only called for one (building the
// name for every element was most of the cost of decoding).
void AppendElement(std::string& out, const Value& v, DataType dt, const auto& where) {
  switch (dt) {
    case DataType::kBool:
      if (v.kind != Value::Kind::kBool)
        Bad(where() + ": expected true or false, got " + TypeName(v));
      AppendRaw<uint8_t>(out, v.b ? 1 : 0);
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
      if (v.kind != Value::Kind::kString) Bad(where() + ": expected a string, got " + TypeName(v));
      return AppendBytesElement(out, v.s);
  }
}

// A tensor's shared-memory parameters (Triton's system shared-memory extension).
struct PendingRegion {
  std::optional<std::string> region;
  std::optional<uint64_t> byte_size, offset;
  bool given() const { return region || byte_size || offset; }
  // Nothing when no parameter was given; else the reference, all parameters checked.
  std::optional<SharedMemoryRef> Take(const std::string& where) {
    if (!given()) return std::nullopt;
    if (!region)
      Bad(where + ": shared_memory_byte_size or _offset given without shared_memory_region");
    if (!byte_size) Bad(where + ": shared_memory_region given without shared_memory_byte_size");
    return SharedMemoryRef{std::move(*region), offset.value_or(0), *byte_size};
  }
};

struct PendingInput {
  size_t index = 0;
  std::optional<std::string> name;
  std::optional<DataType> dtype;
  std::optional<Shape> shape;
  std::optional<uint64_t> binary_size;
  PendingRegion shm;
  bool has_data = false;
  std::string data;       // elements converted as they came
  uint64_t charged = 0;   // data's capacity, charged to the budget
  bool deferred = false;  // "data" came before "datatype": converted in a second pass
  uint64_t seen = 0;
  uint64_t limit = UINT64_MAX;  // the shape's element count, once known
  unsigned keys = 0;            // which known keys were seen (no duplicates)
  std::string Where() const {
    return name ? "input '" + *name + "'" : "input " + std::to_string(index);
  }
};

struct PendingOutput {
  size_t index = 0;
  std::optional<std::string> name;
  std::optional<bool> binary;
  PendingRegion shm;
  bool classification = false;
  unsigned keys = 0;
};

// The KServe v2 JSON request decoded from a stream of parse events, in document order (from
// nlohmann's SAX interface, or from a walk over simdjson's DOM): tensor elements go
// straight into their buffers, so a streamed body takes the tensors' own memory and no
// document tree (simdjson's, charged to the budget, only for bodies up to 1 MiB). JSON objects are
// unordered: an input whose "data" comes before its "datatype" is counted in the first pass and
// converted in a second (`second_pass` holds the datatypes the first learned).
class InferRequestReader {
 public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = std::string;
  using binary_t = json::binary_t;

  InferRequestReader(size_t body_size, BudgetHold* hold,
                     const std::vector<std::optional<DataType>>* second_pass = nullptr)
      : body_size_(body_size), hold_(hold), second_pass_(second_pass) {
    stack_.reserve(kMaxDepth + 1);  // never reallocated: a Level& stays valid across Push()
  }

  bool null() { return OnValue(Value{Value::Kind::kNull}); }
  bool boolean(bool b) {
    Value v{Value::Kind::kBool};
    v.b = b;
    return OnValue(v);
  }
  bool number_integer(int64_t i) {
    Value v{Value::Kind::kInt};
    v.i = i;
    return OnValue(v);
  }
  bool number_unsigned(uint64_t u) {
    Value v{Value::Kind::kUint};
    v.u = u;
    return OnValue(v);
  }
  bool number_float(double d, const std::string& /*text*/) {
    Value v{Value::Kind::kFloat};
    v.d = d;
    return OnValue(v);
  }
  bool string(std::string& s) {
    Value v{Value::Kind::kString};
    v.s = s;
    return OnValue(v);
  }
  bool binary(binary_t&) { return OnValue(Value{Value::Kind::kNull}); }
  bool start_object(std::size_t) { return OnValue(Value{Value::Kind::kObject}); }
  bool start_array(std::size_t) { return OnValue(Value{Value::Kind::kArray}); }
  bool end_object() { return Close(); }
  bool end_array() { return Close(); }
  bool key(std::string& k) {
    Key(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    std::string what = e.what();
    if (auto at = what.find("] "); at != std::string::npos) what = what.substr(at + 2);
    Bad("request body is not valid JSON: " + what);
  }

  // The datatypes of inputs whose data must be read again (empty when none).
  std::vector<std::optional<DataType>> Deferred() const {
    std::vector<std::optional<DataType>> out(inputs_.size());
    bool any = false;
    for (const auto& in : inputs_)
      if (in.deferred && in.dtype) out[in.index] = in.dtype, any = true;
    return any ? out : std::vector<std::optional<DataType>>{};
  }
  // Takes the data the second pass converted.
  void TakeDeferred(InferRequestReader& second) {
    for (auto& in : inputs_)
      if (in.deferred && in.index < second.inputs_.size())
        in.data = std::move(second.inputs_[in.index].data);
  }

  InferRequest Finish(std::string_view binary, bool has_header_length);

  // The events themselves; a value that opens an object or array is closed by End().
  bool OnValue(const Value& v);
  void Key(std::string_view k) { stack_.back().key.assign(k); }
  void End() { Close(); }

 private:
  enum class Frame {
    kRoot,
    kRootParams,
    kInputs,
    kInput,
    kShape,
    kInputParams,
    kData,
    kOutputs,
    kOutput,
    kOutputParams,
    kSkip
  };
  struct Level {
    Frame frame;
    std::string key;
  };

  void Push(Frame f) {
    if (stack_.size() >= kMaxDepth)
      Bad("request body is nested deeper than " + std::to_string(kMaxDepth) + " levels");
    stack_.push_back({f, {}});
  }
  bool Close() {
    const Frame f = stack_.back().frame;
    stack_.pop_back();
    if (f == Frame::kData) --data_depth_;
    return true;
  }
  // Structured values nobody reads are walked past.
  void Skip(const Value& v) {
    if (v.kind == Value::Kind::kObject || v.kind == Value::Kind::kArray) Push(Frame::kSkip);
  }
  // A known key may appear once per object.
  static void Once(unsigned& seen, unsigned bit, const std::string& where, const std::string& key) {
    if (seen & bit) Bad(where + ": '" + key + "' appears twice");
    seen |= bit;
  }

  void OnRoot(const std::string& key, const Value& v);
  // True when `key` is one of the shared-memory parameters (then read into `r`).
  static bool OnRegionParameter(PendingRegion& r, const std::string& key, const Value& v,
                                const std::string& where) {
    if (key == "shared_memory_region") {
      if (v.kind != Value::Kind::kString) Bad(where + ": 'shared_memory_region' must be a string");
      r.region = std::string(v.s);
      return true;
    }
    std::optional<uint64_t>* slot = key == "shared_memory_byte_size" ? &r.byte_size
                                    : key == "shared_memory_offset"  ? &r.offset
                                                                     : nullptr;
    if (!slot) return false;
    auto n = NonNegative(v);
    if (!n) Bad(where + ": '" + key + "' must be a non-negative integer");
    *slot = static_cast<uint64_t>(*n);
    return true;
  }
  void OnInput(PendingInput& in, const std::string& key, const Value& v);
  void OnData(PendingInput& in, const Value& v);
  void OnOutput(PendingOutput& out, const std::string& key, const Value& v);

  // Charges what `in`'s buffer took beyond what was charged before.
  void ChargeGrowth(PendingInput& in) {
    if (hold_ && in.data.capacity() > in.charged) {
      hold_->Add(in.data.capacity() - in.charged, "decoding the request");
      in.charged = in.data.capacity();
    }
  }

  size_t body_size_;
  BudgetHold* hold_;
  const std::vector<std::optional<DataType>>* second_pass_;
  std::vector<Level> stack_;
  int data_depth_ = 0;
  bool started_ = false, has_inputs_ = false;
  unsigned root_keys_ = 0;
  InferRequest req_;
  std::vector<PendingInput> inputs_;
  std::vector<PendingOutput> outputs_;
};

bool InferRequestReader::OnValue(const Value& v) {
  if (!started_) {
    started_ = true;
    if (v.kind != Value::Kind::kObject) Bad("request body must be a JSON object");
    Push(Frame::kRoot);
    return true;
  }
  Level& top = stack_.back();
  switch (top.frame) {
    case Frame::kRoot:
      OnRoot(top.key, v);
      break;
    case Frame::kRootParams:
      if (top.key == "binary_data_output") {
        if (v.kind != Value::Kind::kBool) Bad("parameter 'binary_data_output' must be a boolean");
        req_.binary_outputs = v.b;
      } else if (top.key == "timeout") {
        auto us = NonNegative(v);
        if (!us) Bad("parameter 'timeout' must be microseconds >= 0");
        req_.timeout = std::chrono::microseconds(*us);
      } else {
        Skip(v);
      }
      break;
    case Frame::kInputs: {
      const size_t index = inputs_.size();
      if (v.kind != Value::Kind::kObject)
        Bad("input " + std::to_string(index) + " must be an object");
      inputs_.emplace_back().index = index;
      Push(Frame::kInput);
      break;
    }
    case Frame::kInput:
      OnInput(inputs_.back(), top.key, v);
      break;
    case Frame::kShape: {
      PendingInput& in = inputs_.back();
      auto dim = NonNegative(v);
      if (!dim) Bad(in.Where() + ": 'shape' must be an array of non-negative integers");
      in.shape->push_back(*dim);
      break;
    }
    case Frame::kInputParams: {
      PendingInput& in = inputs_.back();
      if (OnRegionParameter(in.shm, top.key, v, in.Where())) break;
      if (top.key == "binary_data_size") {
        if (v.kind == Value::Kind::kUint) {
          in.binary_size = v.u;
        } else if (v.kind == Value::Kind::kInt && v.i >= 0) {
          in.binary_size = static_cast<uint64_t>(v.i);
        } else {
          Bad(in.Where() + ": 'binary_data_size' must be a non-negative integer");
        }
      } else {
        Skip(v);
      }
      break;
    }
    case Frame::kData:
      OnData(inputs_.back(), v);
      break;
    case Frame::kOutputs: {
      const size_t index = outputs_.size();
      if (v.kind != Value::Kind::kObject)
        Bad("output " + std::to_string(index) + " must be an object");
      outputs_.emplace_back().index = index;
      Push(Frame::kOutput);
      break;
    }
    case Frame::kOutput:
      OnOutput(outputs_.back(), top.key, v);
      break;
    case Frame::kOutputParams: {
      PendingOutput& out = outputs_.back();
      if (OnRegionParameter(out.shm, top.key, v,
                            "output '" + out.name.value_or(std::to_string(out.index)) + "'"))
        break;
      if (top.key == "classification") {
        out.classification = true;
        Skip(v);
      } else if (top.key == "binary_data") {
        if (v.kind != Value::Kind::kBool)
          Bad("output '" + out.name.value_or(std::to_string(out.index)) +
              "': 'binary_data' must be a boolean");
        out.binary = v.b;
      } else {
        Skip(v);
      }
      break;
    }
    case Frame::kSkip:
      Skip(v);
      break;
  }
  return true;
}

void InferRequestReader::OnRoot(const std::string& key, const Value& v) {
  if (key == "id") {
    Once(root_keys_, 1, "request", key);
    if (v.kind != Value::Kind::kString) Bad("'id' must be a string");
    req_.id = std::string(v.s);
  } else if (key == "parameters") {
    Once(root_keys_, 2, "request", key);
    if (v.kind != Value::Kind::kObject) Bad("request: 'parameters' must be an object");
    Push(Frame::kRootParams);
  } else if (key == "inputs") {
    Once(root_keys_, 4, "request", key);
    if (v.kind != Value::Kind::kArray) Bad("'inputs' must be an array");
    has_inputs_ = true;
    Push(Frame::kInputs);
  } else if (key == "outputs") {
    Once(root_keys_, 8, "request", key);
    if (v.kind != Value::Kind::kArray) Bad("'outputs' must be an array");
    Push(Frame::kOutputs);
  } else {
    Skip(v);
  }
}

void InferRequestReader::OnInput(PendingInput& in, const std::string& key, const Value& v) {
  if (key == "name") {
    Once(in.keys, 1, in.Where(), key);
    if (v.kind != Value::Kind::kString) Bad(in.Where() + ": 'name' must be a string");
    in.name = std::string(v.s);
  } else if (key == "datatype") {
    Once(in.keys, 2, in.Where(), key);
    if (v.kind != Value::Kind::kString) Bad(in.Where() + ": 'datatype' must be a string");
    auto dtype = ParseDataType(v.s);
    if (!dtype) Bad(in.Where() + ": unknown datatype '" + std::string(v.s) + "'");
    in.dtype = *dtype;
  } else if (key == "shape") {
    Once(in.keys, 4, in.Where(), key);
    if (v.kind != Value::Kind::kArray)
      Bad(in.Where() + ": 'shape' must be an array of non-negative integers");
    in.shape.emplace();
    Push(Frame::kShape);
  } else if (key == "parameters") {
    Once(in.keys, 8, in.Where(), key);
    if (v.kind != Value::Kind::kObject) Bad(in.Where() + ": 'parameters' must be an object");
    Push(Frame::kInputParams);
  } else if (key == "data") {
    Once(in.keys, 16, in.Where(), key);
    in.has_data = true;
    if (second_pass_) {
      in.dtype = in.index < second_pass_->size() ? (*second_pass_)[in.index] : std::nullopt;
      if (!in.dtype) {  // converted in the first pass already
        Skip(v);
        return;
      }
    } else if (!in.dtype) {
      in.deferred = true;
    }
    if (in.shape) in.limit = ElementCount(*in.shape);
    // Reserve only what the body can actually hold, not what a declared shape claims.
    if (in.dtype && *in.dtype != DataType::kBytes && in.limit != UINT64_MAX) {
      const uint64_t bytes = std::min<uint64_t>(in.limit, body_size_) * ElementSize(*in.dtype);
      if (hold_) hold_->Add(bytes, "decoding the request");  // before it is taken
      in.data.reserve(bytes);
      in.charged = in.data.capacity();
    }
    if (v.kind == Value::Kind::kArray) {
      Push(Frame::kData);
      ++data_depth_;
    } else {
      OnData(in, v);  // a lone value is one element
    }
  } else {
    Skip(v);
  }
}

void InferRequestReader::OnData(PendingInput& in, const Value& v) {
  if (v.kind == Value::Kind::kArray) {
    if (data_depth_ >= kMaxNesting) Bad(in.Where() + ": data is nested too deeply");
    Push(Frame::kData);
    ++data_depth_;
    return;
  }
  if (++in.seen > in.limit)
    Bad(in.Where() + ": data has more elements than the shape holds (" + std::to_string(in.limit) +
        ")");
  if (in.deferred && !second_pass_) {
    if (v.kind == Value::Kind::kObject)
      Bad(in.Where() + ": 'data' holds an object; it takes numbers, booleans or strings");
    return;  // counted now, converted in the second pass
  }
  AppendElement(in.data, v, *in.dtype, [&in] { return in.Where(); });
  ChargeGrowth(in);
}

void InferRequestReader::OnOutput(PendingOutput& out, const std::string& key, const Value& v) {
  const std::string where = "output " + std::to_string(out.index);
  if (key == "name") {
    Once(out.keys, 1, where, key);
    if (v.kind != Value::Kind::kString) Bad(where + ": 'name' must be a string");
    out.name = std::string(v.s);
  } else if (key == "parameters") {
    Once(out.keys, 2, where, key);
    if (v.kind != Value::Kind::kObject) Bad(where + ": 'parameters' must be an object");
    Push(Frame::kOutputParams);
  } else {
    Skip(v);
  }
}

InferRequest InferRequestReader::Finish(std::string_view binary, bool has_header_length) {
  if (!has_inputs_) Bad("'inputs' must be an array");
  size_t binary_offset = 0;
  for (PendingInput& in : inputs_) {
    const std::string where = in.Where();
    if (!in.name) Bad(where + ": missing 'name'");
    if (!in.dtype) Bad(where + ": missing 'datatype'");
    if (!in.shape) Bad(where + ": missing 'shape'");
    Tensor t;
    t.name = std::move(*in.name);
    t.dtype = *in.dtype;
    t.shape = std::move(*in.shape);
    const uint64_t count = ElementCount(t.shape);
    if (auto ref = in.shm.Take(where)) {
      if (in.binary_size || in.has_data)
        Bad(where + ": has shared_memory_region and also " +
            (in.has_data ? "'data'" : "binary_data_size"));
      req_.input_regions.resize(inputs_.size());
      req_.input_regions[req_.inputs.size()] = std::move(*ref);
      req_.inputs.push_back(std::move(t));  // its data is read from the region later
      continue;
    }
    if (in.binary_size) {
      if (!has_header_length)
        Bad(where + ": binary_data_size given without an Inference-Header-Content-Length header");
      if (in.has_data) Bad(where + ": has both 'data' and binary_data_size");
      if (*in.binary_size > binary.size() - binary_offset) {
        Bad(where + ": binary_data_size " + std::to_string(*in.binary_size) +
            " runs past the end of the body (" + std::to_string(binary.size() - binary_offset) +
            " bytes left)");
      }
      if (hold_) hold_->Add(*in.binary_size, "decoding the request");
      t.data.assign(binary.substr(binary_offset, *in.binary_size));
      binary_offset += *in.binary_size;
    } else {
      if (!in.has_data) Bad(where + ": missing 'data'");
      if (in.seen > count)
        Bad(where + ": data has more elements than the shape holds (" + std::to_string(count) +
            ")");
      t.data = std::move(in.data);
      if (in.seen != count) {
        Bad(where + ": shape " + ShapeToString(t.shape) + " needs " + std::to_string(count) +
            " elements, 'data' has " + std::to_string(in.seen));
      }
    }
    ValidateTensorData(t, "input");
    req_.inputs.push_back(std::move(t));
  }
  if (binary_offset != binary.size()) {
    Bad("the body has " + std::to_string(binary.size() - binary_offset) +
        " bytes after the JSON header that no input's binary_data_size accounts for");
  }
  for (PendingOutput& out : outputs_) {
    if (!out.name) Bad("output " + std::to_string(out.index) + ": missing 'name'");
    if (out.classification)
      Bad("output '" + *out.name + "': the classification extension is not supported");
    std::optional<SharedMemoryRef> ref = out.shm.Take("output '" + *out.name + "'");
    if (ref && out.binary.value_or(false))
      Bad("output '" + *out.name + "': has shared_memory_region and also binary_data");
    req_.outputs.push_back(
        {std::move(*out.name), out.binary.value_or(req_.binary_outputs), std::move(ref)});
  }
  return std::move(req_);
}

[[noreturn]] void NotJson(simdjson::error_code e) {
  Bad(std::string("request body is not valid JSON: ") + simdjson::error_message(e));
}

// A body indexed whole by simdjson's DOM parser (its stage 1 is picked for this CPU at run
// time; the On-Demand API would be compiled for the baseline ISA), then walked into a reader's
// events as many times as needed. Every value is visited, so the reader sees and bounds all.
class IndexedJson {
 public:
  // False where simdjson declines a number nlohmann may read (integers past 64 bits) or nests
  // past its own limit: the caller streams that body instead, so both parsers answer alike.
  bool Parse(std::string_view text) {
    text_ = simdjson::padded_string(text);
    simdjson::error_code e = parser_.parse(text_).get(root_);
    if (e == simdjson::NUMBER_ERROR || e == simdjson::DEPTH_ERROR) return false;
    if (e != simdjson::SUCCESS) NotJson(e);
    return true;
  }

  void Walk(InferRequestReader& reader) const {
    if (!root_.is_object()) {
      reader.OnValue(Value{root_.is_array() ? Value::Kind::kArray : Value::Kind::kNull});
      Bad("request body must be a JSON object");
    }
    WalkValue(root_, reader);
  }

 private:
  static void WalkValue(simdjson::dom::element v, InferRequestReader& reader) {
    using simdjson::dom::element_type;
    Value out{Value::Kind::kNull};
    switch (v.type()) {
      case element_type::OBJECT:
        reader.OnValue(Value{Value::Kind::kObject});
        for (auto field : simdjson::dom::object(v)) {
          reader.Key(field.key);
          WalkValue(field.value, reader);
        }
        reader.End();
        return;
      case element_type::ARRAY:
        reader.OnValue(Value{Value::Kind::kArray});
        for (simdjson::dom::element element : simdjson::dom::array(v)) WalkValue(element, reader);
        reader.End();
        return;
      case element_type::INT64:
        out.kind = Value::Kind::kInt;
        out.i = v.get_int64().value_unsafe();
        break;
      case element_type::UINT64:
        out.kind = Value::Kind::kUint;
        out.u = v.get_uint64().value_unsafe();
        break;
      case element_type::DOUBLE:
        out.kind = Value::Kind::kFloat;
        out.d = v.get_double().value_unsafe();
        break;
      case element_type::STRING:
        out.kind = Value::Kind::kString;
        out.s = v.get_string().value_unsafe();
        break;
      case element_type::BOOL:
        out.kind = Value::Kind::kBool;
        out.b = v.get_bool().value_unsafe();
        break;
      case element_type::NULL_VALUE:
        break;
    }
    reader.OnValue(out);
  }

  simdjson::padded_string text_;
  simdjson::dom::parser parser_;
  simdjson::dom::element root_;
};

}  // namespace

std::optional<size_t> ParseHeaderLength(std::string_view value) {
  size_t n = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || ptr != value.data() + value.size() || value.empty()) return std::nullopt;
  return n;
}

InferRequest DecodeHttpInferRequest(std::string_view body, std::optional<size_t> header_length,
                                    BudgetHold* hold, JsonBodyParser parser) {
  if (header_length && *header_length > body.size()) {
    Bad("Inference-Header-Content-Length " + std::to_string(*header_length) +
        " exceeds the body of " + std::to_string(body.size()) + " bytes");
  }
  std::string_view header = header_length ? body.substr(0, *header_length) : body;
  std::string_view binary = header_length ? body.substr(*header_length) : std::string_view{};
  // nlohmann's parser would take a NUL for the end of the input and ignore what follows.
  if (const size_t nul = header.find('\0'); nul != std::string_view::npos)
    Bad("request body is not valid JSON: a NUL byte at byte " + std::to_string(nul));
  InferRequestReader reader(header.size(), hold);
  if (parser == JsonBodyParser::kBySize)
    parser =
        header.size() <= kIndexedJsonBytes ? JsonBodyParser::kIndexed : JsonBodyParser::kStreaming;
  if (parser == JsonBodyParser::kIndexed) {
    BudgetHold index_memory(hold ? hold->budget() : nullptr);  // freed on return
    index_memory.Add(header.size() * kIndexBytesPerByte + simdjson::SIMDJSON_PADDING,
                     "parsing the request");
    IndexedJson doc;
    if (doc.Parse(header)) {
      doc.Walk(reader);
      if (auto deferred = reader.Deferred(); !deferred.empty()) {
        InferRequestReader second(header.size(), hold, &deferred);
        doc.Walk(second);
        reader.TakeDeferred(second);
      }
      return reader.Finish(binary, header_length.has_value());
    }
  }
  json::sax_parse(header.begin(), header.end(), &reader, json::input_format_t::json, true, false);
  if (auto deferred = reader.Deferred(); !deferred.empty()) {
    InferRequestReader second(header.size(), hold, &deferred);
    json::sax_parse(header.begin(), header.end(), &second, json::input_format_t::json, true, false);
    reader.TakeDeferred(second);
  }
  return reader.Finish(binary, header_length.has_value());
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
    const SharedMemoryRef* region = nullptr;
    for (const auto& ro : request.outputs) {
      if (ro.name != t.name) continue;
      as_binary = ro.binary;
      if (ro.shared_memory) region = &*ro.shared_memory;
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
    if (region) {  // the client reads it from its region
      out += ",\"parameters\":{\"shared_memory_region\":";
      AppendJsonString(out, region->region);
      out += ",\"shared_memory_byte_size\":" + std::to_string(t.data.size());
      if (region->offset) out += ",\"shared_memory_offset\":" + std::to_string(region->offset);
      out += "}}";
    } else if (as_binary) {
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
