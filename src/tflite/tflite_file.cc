#include "tflite/tflite_file.h"

#include "core/error.h"

namespace outpost::tflite {
namespace {

[[noreturn]] void Bad(const std::string& what) {
  Fail(ErrorCode::kInvalidArgument, "tflite: " + what);
}

// A hostile file could declare millions of tensors or operators; these bound the work and
// memory the importer spends before anything runs (real models stay far below).
constexpr size_t kMaxSubgraphs = 1024;
constexpr size_t kMaxTensors = 1 << 20;
constexpr size_t kMaxOperators = 1 << 20;
constexpr size_t kMaxRank = 16;

void CheckIndices(const flatbuffers::Vector<int32_t>* list, size_t tensors, bool optional_ok,
                  const std::string& where) {
  if (!list) return;
  for (int32_t i : *list) {
    if (i == -1 && optional_ok) continue;
    if (i < 0 || static_cast<size_t>(i) >= tensors)
      Bad(where + " refers to tensor " + std::to_string(i) + " of " + std::to_string(tensors));
  }
}

}  // namespace

TfliteFile TfliteFile::Open(std::string_view bytes) {
  if (bytes.size() < 8) Bad("the file is too short to be a TensorFlow Lite model");
  // The identifier "TFL3" sits at bytes 4..7; an older identifier-less file is still accepted
  // by the interpreter, so only a different identifier is refused.
  if (bytes.substr(4, 4) != "TFL3" && bytes.substr(4, 4) != std::string_view("\0\0\0\0", 4))
    Bad("not a TensorFlow Lite model (file identifier is not TFL3)");
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  if (bytes.size() >= FLATBUFFERS_MAX_BUFFER_SIZE)
    Bad("the file is larger than a flatbuffer can be");
  flatbuffers::Verifier verifier(data, bytes.size(), /*max_depth=*/64, /*max_tables=*/4000000);
  if (!::tflite::VerifyModelBuffer(verifier))
    Bad("the flatbuffer does not verify (truncated or corrupt file)");
  TfliteFile f;
  f.bytes_ = bytes;
  f.model_ = ::tflite::GetModel(data);
  const auto& m = *f.model_;
  if (!m.subgraphs() || m.subgraphs()->size() == 0) Bad("the model has no subgraphs");
  if (m.subgraphs()->size() > kMaxSubgraphs) Bad("too many subgraphs");
  size_t codes = m.operator_codes() ? m.operator_codes()->size() : 0;
  size_t buffers = m.buffers() ? m.buffers()->size() : 0;
  for (size_t s = 0; s < m.subgraphs()->size(); ++s) {
    const auto& g = *m.subgraphs()->Get(s);
    std::string where = "subgraph " + std::to_string(s);
    size_t tensors = g.tensors() ? g.tensors()->size() : 0;
    if (tensors > kMaxTensors) Bad(where + " has too many tensors");
    for (size_t t = 0; t < tensors; ++t) {
      const auto& tensor = *g.tensors()->Get(t);
      if (tensor.buffer() >= buffers && tensor.buffer() != 0)
        Bad(where + " tensor " + std::to_string(t) + " refers to buffer " +
            std::to_string(tensor.buffer()) + " of " + std::to_string(buffers));
      if (tensor.shape() && tensor.shape()->size() > kMaxRank)
        Bad(where + " tensor " + std::to_string(t) + " has rank above " + std::to_string(kMaxRank));
      if (tensor.shape())
        for (int32_t d : *tensor.shape())
          if (d < 0) Bad(where + " tensor " + std::to_string(t) + " has a negative dimension");
      // The verifier checks a vector's length word, not that 8-byte elements are 8-byte
      // aligned; reading a misaligned zero-point list would be undefined behaviour.
      if (const auto* q = tensor.quantization();
          q && q->zero_point() && (q->zero_point()->Data() - data) % alignof(int64_t) != 0)
        Bad(where + " tensor " + std::to_string(t) + ": its zero points are misaligned");
      if (tensor.shape_signature() && tensor.shape() &&
          tensor.shape_signature()->size() != tensor.shape()->size())
        Bad(where + " tensor " + std::to_string(t) + ": shape_signature and shape differ in rank");
    }
    CheckIndices(g.inputs(), tensors, false, where + " inputs");
    CheckIndices(g.outputs(), tensors, false, where + " outputs");
    size_t ops = g.operators() ? g.operators()->size() : 0;
    if (ops > kMaxOperators) Bad(where + " has too many operators");
    for (size_t o = 0; o < ops; ++o) {
      const auto& op = *g.operators()->Get(o);
      std::string at = where + " operator " + std::to_string(o);
      if (op.opcode_index() >= codes) Bad(at + " has no operator code");
      CheckIndices(op.inputs(), tensors, true, at + " input");
      CheckIndices(op.outputs(), tensors, false, at + " output");
      CheckIndices(op.intermediates(), tensors, true, at + " intermediate");
    }
  }
  return f;
}

int32_t TfliteFile::BuiltinCode(const ::tflite::Operator& op) const {
  const auto& code = *model_->operator_codes()->Get(op.opcode_index());
  // Codes above 127 live only in builtin_code; older files fill only the deprecated byte.
  return std::max<int32_t>(code.builtin_code(), code.deprecated_builtin_code());
}

std::string TfliteFile::CustomCode(const ::tflite::Operator& op) const {
  const auto* c = model_->operator_codes()->Get(op.opcode_index())->custom_code();
  return c ? c->str() : "";
}

std::string TfliteFile::OperatorName(const ::tflite::Operator& op) const {
  int32_t code = BuiltinCode(op);
  if (code == ::tflite::BuiltinOperator_CUSTOM) return "CUSTOM:" + CustomCode(op);
  if (code >= ::tflite::BuiltinOperator_MIN && code <= ::tflite::BuiltinOperator_MAX) {
    const char* name =
        ::tflite::EnumNameBuiltinOperator(static_cast<::tflite::BuiltinOperator>(code));
    if (name && *name) return name;
  }
  return "BUILTIN_" + std::to_string(code);
}

std::span<const uint8_t> TfliteFile::TensorData(const ::tflite::Tensor& tensor) const {
  // Buffer 0 is the empty sentinel every non-constant tensor points at.
  if (tensor.buffer() == 0 || !model_->buffers()) return {};
  const auto& buffer = *model_->buffers()->Get(tensor.buffer());
  if (buffer.data() && buffer.data()->size() > 0)
    return {buffer.data()->data(), buffer.data()->size()};
  // Models over 2 GB keep buffers after the flatbuffer, addressed by offset and size.
  if (buffer.offset() > 1) {
    uint64_t off = buffer.offset(), size = buffer.size();
    if (off > bytes_.size() || size > bytes_.size() - off)
      Bad("a buffer lies outside the file (offset " + std::to_string(off) + ", size " +
          std::to_string(size) + ", file " + std::to_string(bytes_.size()) + " bytes)");
    return {reinterpret_cast<const uint8_t*>(bytes_.data()) + off, static_cast<size_t>(size)};
  }
  return {};
}

bool TfliteFile::IsConstant(const ::tflite::Tensor& tensor) const {
  if (!TensorData(tensor).empty()) return true;
  if (!tensor.shape() || tensor.shape()->size() == 0) return false;
  for (int32_t d : *tensor.shape())
    if (d == 0) return true;
  return false;
}

size_t TfliteElementSize(::tflite::TensorType type) {
  using ::tflite::TensorType;
  switch (type) {
    case TensorType::TensorType_FLOAT32:
    case TensorType::TensorType_INT32:
    case TensorType::TensorType_UINT32:
      return 4;
    case TensorType::TensorType_FLOAT16:
    case TensorType::TensorType_INT16:
    case TensorType::TensorType_UINT16:
      return 2;
    case TensorType::TensorType_UINT8:
    case TensorType::TensorType_INT8:
    case TensorType::TensorType_BOOL:
      return 1;
    case TensorType::TensorType_INT64:
    case TensorType::TensorType_UINT64:
    case TensorType::TensorType_FLOAT64:
      return 8;
    default:
      return 0;
  }
}

std::string TfliteTypeName(::tflite::TensorType type) {
  const char* n = ::tflite::EnumNameTensorType(type);
  return n && *n ? n : "type " + std::to_string(static_cast<int>(type));
}

}  // namespace outpost::tflite
